"""The lmdb backend: the embedded default.

Layout: one LMDB environment (a directory) with two named databases, ``meta`` (the store's
metadata record) and ``data`` (the key-value pairs). Every data key is stored behind a one-byte
prefix because LMDB refuses the empty key, which the engine accepts like any other; this is why
the engine's key limit is 510 bytes, one less than LMDB's 511.

Durability: ``sync`` and ``metasync`` are on unless the caller turns them off, so a commit returns
only after LMDB's fsyncs; an fsync failure makes LMDB's commit fail, and the write fails with it.

Group commit (see engine.batching.BatchingStore) is done without ever sharing an LMDB write
transaction between threads, which LMDB forbids (its writer mutex belongs to the thread that
began the transaction). Writers read the committed state through a read transaction plus the
batch's pending changes; the thread that flushes opens the LMDB write transaction, applies every
pending change and commits, all in that one thread.

Several writing processes (``autobyteus-server --workers N``, a tool writing beside the server):
a batch reads a snapshot and is written only when it is flushed, so LMDB's own writer lock, held
only by the flush, does not keep another process from writing between a batch's reads and its
commit. A cross-process lock (a POSIX record lock, ``fcntl``, as LMDB's own: it works where
``flock`` does not, on ``writers.lock`` in the environment's directory) is
therefore taken before a batch's snapshot and released after its commit, once no batch of this
process is open or in flight; the kernel releases it when a process dies. A store opened with
``multiprocess=True`` flushes each batch before the next one opens (not pipelined), so that the
lock is given up between batches and a busy process cannot hold it for ever.

Map growth: when LMDB reports the map full, the flush aborts its write transaction, waits until no
read transaction of this process is open (LMDB's rule for mdb_env_set_mapsize), grows the map, and
writes again; callers never see MapFullError. Another process that grew the map is picked up by
set_mapsize(0) when a transaction reports MapResizedError.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import lmdb

from engine import errors
from engine.backends.common import (
    backup_directory,
    check_metadata,
    create_directories,
    fsync_directory,
    metadata_record,
    out_of_space,
)
from engine.batching import _MISSING, BatchingStore, WriteSet
from engine.interface import MAX_KEY_SIZE, Transaction, check_key, limited

_KEY_PREFIX = b"k"
_META_KEY = b"store"
_IS_64BIT = sys.maxsize > 2**32
#: A sparse reservation of address space, not disk: large on 64-bit, small where address space is
#: scarce (32-bit boards), growing by itself in both cases.
DEFAULT_MAP_SIZE = (256 << 20) if _IS_64BIT else (16 << 20)
#: Grow before a flush once the map is this full, so that most growth needs no retried write.
_GROW_AT = 0.80
_open_paths: set[str] = set()
_open_paths_lock = threading.Lock()


def _wrap(exc: BaseException, action: str) -> errors.EngineError:
    """The one place where py-lmdb's exceptions become the engine's."""
    if isinstance(exc, errors.EngineError):
        return exc
    if isinstance(exc, lmdb.MapFullError):
        return errors.StoreFullError(f"{action}: the LMDB map could not grow: {exc}")
    if isinstance(exc, (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError,
                        lmdb.VersionMismatchError)):
        return errors.CorruptStoreError(f"{action}: {exc}")
    if isinstance(exc, lmdb.ReadonlyError):
        return errors.ReadOnlyError(f"{action}: {exc}")
    if isinstance(exc, (lmdb.ReadersFullError,)):
        return errors.BackendUnavailableError(f"{action}: {exc}")
    code = getattr(exc, "errno", None)
    if isinstance(exc, lmdb.Error):
        # py-lmdb reports system errors as lmdb.Error with the strerror text; recover the errno.
        text = str(exc)
        for name in ("ENOSPC", "EDQUOT", "EFBIG"):
            if os.strerror(getattr(errno, name)) in text:
                return errors.StoreFullError(f"{action}: {exc}")
        if os.strerror(errno.EIO) in text:
            return errors.DurabilityError(f"{action}: {exc}")
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return errors.StoreFullError(f"{action}: {exc}")
    if code == errno.EIO:
        return errors.DurabilityError(f"{action}: {exc}")
    return errors.EngineError(f"{action}: {exc}")


class _ReaderGate:
    """Counts this process's open read transactions so the map can be resized between them.

    Every point read passes through here, so being counted takes no lock and no call: a reader is
    counted while it holds a reference to ``token``, and the count is the token's reference count
    beyond the gate's own. A reader takes the reference, then looks at ``resizing``; the resizer
    sets ``resizing`` first, then waits for the count to reach zero. Whichever order the two
    interleave in, no reader works on the map while it is resized: a reader that saw
    ``resizing`` unset was already counted, and one that sees it set drops its reference and
    waits for the resize to end.

    Counting references rather than calls to enter/leave means a read transaction that its
    caller forgot to close stops counting when the object is freed, without a ``__del__`` on the
    hot path: it cannot pin the gate (and stop the map from ever growing again).
    """

    def __init__(self) -> None:
        self.token = object()
        self._own_refs = sys.getrefcount(self.token)
        self._cond = threading.Condition(threading.Lock())
        self.resizing = False

    def readers(self) -> int:
        """How many read transactions of this process hold the token now."""
        return sys.getrefcount(self.token) - self._own_refs

    def wait_resize(self) -> None:
        """Block while a resize is under way (called by a reader that is not counted)."""
        with self._cond:
            while self.resizing:
                self._cond.wait()

    def exclusive(self, fn: Any, timeout: float = 30.0) -> None:
        with self._cond:
            self.resizing = True
            try:
                # A thread that holds a read transaction while it waits for a write would wait
                # for us forever: give up rather than deadlock, failing this one write. Readers
                # leave without telling anyone (dropping a reference), hence the short polls.
                deadline = time.monotonic() + timeout
                while self.readers():
                    if time.monotonic() >= deadline:
                        raise errors.StoreFullError(
                            "the LMDB map is full and could not grow: read transactions stayed "
                            "open"
                        )
                    self._cond.wait(0.002)
                fn()
            finally:
                self.resizing = False
                self._cond.notify_all()


def _scan_db(
    txn: lmdb.Transaction, lo: bytes, hi: bytes | None, reverse: bool
) -> Iterator[tuple[bytes, bytes]]:
    """Pairs of [lo, hi) from an LMDB transaction begun on the data database, in key order,
    without the key prefix."""
    plo = _KEY_PREFIX + lo
    phi = _KEY_PREFIX + hi if hi is not None else None
    # py-lmdb's stubs say bytes | memoryview; without ``buffers=True`` (never used here) keys and
    # values are bytes, hence the ignores below instead of a cast per item.
    with txn.cursor() as cur:
        if not reverse:
            if not cur.set_range(plo):
                return
            for k, v in cur:
                if phi is not None and k >= phi:  # type: ignore[operator]
                    return
                yield k[1:], v  # type: ignore[misc]
        else:
            if phi is None:
                positioned = cur.last()
            else:
                # Last key < phi: land on the first key >= phi, then step back one.
                positioned = cur.prev() if cur.set_range(phi) else cur.last()
            if not positioned:
                return
            for k, v in cur.iterprev():
                if k < plo:  # type: ignore[operator]
                    return
                yield k[1:], v  # type: ignore[misc]


class LmdbReadTransaction(Transaction):
    """A read transaction: one LMDB read transaction (a snapshot) on the data database.

    Point reads are the hottest path of the server, so the per-operation work is kept to what
    correctness needs: being counted by the reader gate, LMDB's begin / get / abort, and the key
    check. Instances are made by :meth:`LmdbStore.begin` (no ``__init__``, which would cost a
    Python call per read); ``_token`` is None once the transaction is closed.
    """

    write = False
    # _txn before _token: when a forgotten transaction is freed, its slots are cleared in this
    # order, so the LMDB transaction is aborted before the gate stops counting it.
    __slots__ = ("_txn", "_token")
    _txn: lmdb.Transaction
    _token: object | None

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return self._token is None

    def get(self, key: bytes) -> bytes | None:
        if type(key) is not bytes or len(key) > MAX_KEY_SIZE:
            key = check_key(key)
        try:
            return self._txn.get(_KEY_PREFIX + key)  # type: ignore[return-value]
        except lmdb.Error as exc:  # a closed transaction lands here too: LMDB refuses it
            if self._token is None:
                raise errors.TransactionClosedError("the transaction is already closed") from None
            raise _wrap(exc, "reading") from exc

    def _check_open(self) -> None:
        if self._token is None:
            raise errors.TransactionClosedError("the transaction is already closed")

    def _scan(
        self, lo: bytes, hi: bytes | None, reverse: bool, limit: int | None
    ) -> Iterator[tuple[bytes, bytes]]:
        return limited(_scan_db(self._txn, lo, hi, reverse), limit)

    def _end(self) -> None:
        if self._token is not None:
            self._txn.abort()
            self._token = None  # after the abort: the map may be resized from here on

    commit = _end
    abort = _end

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # Commit and abort are the same for a reader: _end() inlined, without the base class's
        # dispatch.
        if self._token is not None:
            self._txn.abort()
            self._token = None


def _put_all(txn: lmdb.Transaction, changes: dict[bytes, bytes | None]) -> None:
    """Apply a batch's changes (None: delete) to an LMDB write transaction."""
    for key, value in changes.items():
        if value is None:
            txn.delete(_KEY_PREFIX + key)
        else:
            txn.put(_KEY_PREFIX + key, value)


class _LmdbBatch:
    """A batch: the committed state as one read snapshot, plus everyone's pending changes.

    ``base`` is the pending changes of the batch being flushed when this one opened (group
    commit is pipelined): the snapshot may or may not hold them yet, so reads look there first.
    For the same reason the snapshot may be replaced by a later one while the batch is open (a
    flush that grows the map releases it, see ``LmdbStore._release_open_snapshot``).
    """

    __slots__ = ("snapshot", "token", "pending", "base", "written", "locking")

    def __init__(self, snapshot: lmdb.Transaction, token: object, base: WriteSet | None) -> None:
        self.snapshot: lmdb.Transaction | None = snapshot
        self.token: object | None = token  # the reader gate counts the snapshot by this
        self.pending = WriteSet()
        self.base = base
        #: The LMDB write transaction holding the changes, once written and until committed.
        self.written: lmdb.Transaction | None = None
        #: Counted by the cross-process writer lock until committed or aborted.
        self.locking = False


class LmdbStore(BatchingStore):
    provider = "lmdb"
    # Writers never share the LMDB write transaction (only the flushing thread opens one), so
    # the next batch can gather its writers while the previous one is being flushed.
    pipelined = True

    def __init__(
        self,
        path: str,
        *,
        readonly: bool = False,
        create: bool = True,
        sync: bool = True,
        map_size: int | None = None,
        max_readers: int = 510,
        multiprocess: bool = False,
    ) -> None:
        super().__init__()
        if multiprocess:
            self.pipelined = False  # see the module's documentation
        self._writers_fd: int | None = None
        self._writers_held = 0
        self._writers_count_lock = threading.Lock()
        self.path = os.path.abspath(path)
        self.readonly = readonly
        self.sync = sync
        self._closed = True
        self._stale_readers_cleared = 0
        self._gate = _ReaderGate()
        exists = os.path.exists(os.path.join(self.path, "data.mdb"))
        if not exists and (readonly or not create):
            raise errors.StoreNotFoundError(f"no lmdb store at {self.path}")
        with _open_paths_lock:
            if self.path in _open_paths:
                # LMDB forbids opening one environment twice in a process (its locks would break).
                raise errors.StoreLockedError(f"{self.path} is already open in this process")
            _open_paths.add(self.path)
        try:
            if not exists:
                create_directories(self.path)
            self._env = lmdb.open(
                self.path,
                map_size=map_size or DEFAULT_MAP_SIZE,
                max_dbs=2,
                max_readers=max_readers,
                readonly=readonly,
                sync=sync,
                metasync=sync,
                lock=True,
                subdir=True,
                create=not readonly,
            )
        except lmdb.Error as exc:
            with _open_paths_lock:
                _open_paths.discard(self.path)
            if isinstance(exc, lmdb.ReadonlyError) or "Permission denied" in str(exc):
                raise errors.ReadOnlyError(f"cannot open {self.path} for writing: {exc}") from exc
            raise _wrap(exc, f"opening {self.path}") from exc
        except BaseException:
            with _open_paths_lock:
                _open_paths.discard(self.path)
            raise
        self._closed = False
        try:
            if not readonly:
                lock_path = os.path.join(self.path, "writers.lock")
                try:
                    self._writers_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                               0o600)
                except OSError as exc:
                    raise errors.ReadOnlyError(
                        f"cannot open {lock_path} for writing: {exc}") from exc
                # Reader slots left by processes that died (SIGKILL) would pin old pages forever.
                self._stale_readers_cleared = self._env.reader_check()
            self._open_databases()
            if not exists and not readonly:
                # LMDB syncs its files, never the directory that names them: a new store's
                # data.mdb must be named durably before its first write is acknowledged.
                fsync_directory(self.path)
        except BaseException:
            self.close()
            raise

    def _open_databases(self) -> None:
        if self.readonly:
            try:
                self._meta_db = self._env.open_db(b"meta", create=False)
                self._data = self._env.open_db(b"data", create=False)
            except lmdb.NotFoundError as exc:
                raise errors.StoreNotFoundError(f"{self.path} holds no store yet") from exc
            with self._env.begin(db=self._meta_db) as txn:
                raw = txn.get(_META_KEY)
        else:
            with self._env.begin(write=True) as txn:
                self._meta_db = self._env.open_db(b"meta", txn=txn)
                self._data = self._env.open_db(b"data", txn=txn)
                raw = txn.get(_META_KEY, db=self._meta_db)
                if raw is None:
                    if txn.stat(self._data)["entries"]:
                        raise errors.CorruptStoreError(f"{self.path} has data but no metadata")
                    raw = json.dumps(metadata_record(self.provider)).encode()
                    txn.put(_META_KEY, raw, db=self._meta_db)
        if raw is None:
            raise errors.CorruptStoreError(f"{self.path} has no metadata record")
        try:
            meta = json.loads(raw)
        except ValueError as exc:
            raise errors.CorruptStoreError(f"{self.path}: unreadable metadata") from exc
        check_metadata(meta, self.provider, self.path)
        self._metadata = meta

    # -- Store -------------------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def begin(self, write: bool = False) -> Transaction:
        if write:
            return self._begin_write()
        txn = LmdbReadTransaction()
        gate = self._gate
        txn._token = gate.token  # counted by the gate from here on
        if gate.resizing:
            self._wait_for_resize(txn)
        try:
            txn._txn = self._env.begin(db=self._data)
        except lmdb.Error:
            # The store is closed, the map was resized by another process, or a real error.
            try:
                if self._closed:
                    raise errors.StoreClosedError(f"the store at {self.path} is closed") from None
                txn._txn = self._begin_lmdb_read()
            except BaseException:
                txn._token = None
                raise
        return txn

    def _wait_for_resize(self, txn: LmdbReadTransaction) -> None:
        gate = self._gate
        while gate.resizing:
            txn._token = None
            gate.wait_resize()
            txn._token = gate.token

    def _check_writable(self) -> None:
        if self._closed or self._closing:
            raise errors.StoreClosedError(f"the store at {self.path} is closed")
        if self.readonly:
            raise errors.ReadOnlyError(f"the store at {self.path} was opened read-only")

    def close(self) -> None:
        if self._closed:
            return
        if not self.readonly:
            self._drain_writers()
        self._closed = True
        try:
            self._env.close()
        finally:
            if self._writers_fd is not None:
                os.close(self._writers_fd)  # releases the lock too, if a failure left it held
                self._writers_fd = None
            with _open_paths_lock:
                _open_paths.discard(self.path)

    def backup(self, directory: str, *, compact: bool = True) -> None:
        # mdb_env_copy2 copies from one read transaction: consistent, and the writer goes on
        # meanwhile. compact=True also leaves out free pages.
        if self._closed:
            raise errors.StoreClosedError(f"the store at {self.path} is closed")
        target = backup_directory(directory)
        try:
            self._env.copy(target, compact=compact)
        except Exception as exc:
            raise errors.EngineError(f"lmdb copy to {target} failed: {exc}") from exc

    def stats(self) -> dict[str, Any]:
        info = self._env.info()
        stat = self._env.stat()
        with self._env.begin() as txn:
            data = txn.stat(self._data)
        psize = stat["psize"]
        used_pages = info["last_pgno"] + 1
        return {
            "provider": self.provider,
            "path": self.path,
            "records": data["entries"],
            "map_size": info["map_size"],
            "map_used_bytes": used_pages * psize,
            "map_use": round(used_pages * psize / info["map_size"], 4),
            "page_size": psize,
            "pages": {
                "branch": data["branch_pages"],
                "leaf": data["leaf_pages"],
                "overflow": data["overflow_pages"],
                "used": used_pages,
            },
            "readers": {
                "max": info["max_readers"],
                "slots_used": info["num_readers"],
                "stale_cleared_at_open": self._stale_readers_cleared,
            },
            "file_bytes": os.path.getsize(os.path.join(self.path, "data.mdb")),
        }

    # -- LMDB specifics ----------------------------------------------------------------------
    def _begin_lmdb_read(self) -> lmdb.Transaction:
        """An LMDB read transaction on the data database; the caller is counted by the gate."""
        try:
            return self._env.begin(db=self._data)
        except lmdb.MapResizedError:
            # Another process grew the map: adopt its size (0 = the size now in the file).
            self._env.set_mapsize(0)
            return self._env.begin(db=self._data)
        except lmdb.Error as exc:
            raise _wrap(exc, "beginning a read transaction") from exc

    def _grow_map(self, minimum: int = 0) -> None:
        current = self._env.info()["map_size"]
        # Doubling keeps the number of resizes logarithmic; past 1 GiB, steps of 1 GiB avoid
        # reserving far more address space than the data needs.
        target = current * 2 if current < (1 << 30) else current + (1 << 30)
        target = max(target, minimum)

        def resize() -> None:
            try:
                self._env.set_mapsize(target)
            except (MemoryError, OverflowError, lmdb.Error) as exc:
                # A 32-bit address space cannot reserve more: the store is full.
                raise errors.StoreFullError(
                    f"the LMDB map cannot grow from {current} to {target} bytes: {exc}"
                ) from exc

        self._release_open_snapshot()
        self._gate.exclusive(resize)

    def _release_open_snapshot(self) -> None:
        """Let a flush grow the map although a batch is open meanwhile.

        The open batch stays open for as long as a flush runs (its writers join it), so the flush
        must not wait for its snapshot: release it, under the writer mutex so that no member is
        reading. The batch takes a new snapshot at its next read, after the resize; read through
        the pending changes of the batch in flight, the new snapshot is the same state as the
        old one (this process is the only writer, and if that flush fails, so does this batch).
        """
        mutex = self._writer_mutex
        # close() holds the mutex while it waits for this flush; it seals the open batch, which
        # releases the snapshot, so there is then nothing to do here.
        while not mutex.acquire(timeout=0.01):
            if self._closing:
                return
        try:
            batch = self._batch
            if batch is not None and batch.handle is not None:
                self._release_snapshot(batch.handle)
        finally:
            mutex.release()

    def _maybe_grow(self) -> None:
        info = self._env.info()
        used = (info["last_pgno"] + 1) * self._env.stat()["psize"]
        if used >= info["map_size"] * _GROW_AT:
            self._grow_map()

    # -- group-commit hooks ------------------------------------------------------------------
    def _batch_open(self) -> _LmdbBatch:
        return self._open_batch(None)

    def _batch_open_after(self, sealed: _LmdbBatch) -> _LmdbBatch:
        # The sealed batch's changes are taken before the snapshot: whether or not its flush
        # lands in between, the two together are the state after it.
        return self._open_batch(sealed.pending)

    def _open_batch(self, base: WriteSet | None) -> _LmdbBatch:
        self._hold_writers_lock()  # before the snapshot: it must see every other process's write
        try:
            snapshot, token = self._counted_snapshot()
        except BaseException:
            self._release_writers_lock()
            raise
        batch = _LmdbBatch(snapshot, token, base)
        batch.locking = True
        return batch

    def _hold_writers_lock(self) -> None:
        """Count one more batch of this process; the first takes the cross-process lock."""
        with self._writers_count_lock:
            if self._writers_held == 0 and self._writers_fd is not None:
                try:
                    fcntl.lockf(self._writers_fd, fcntl.LOCK_EX)
                except OSError as exc:
                    raise _wrap(exc, "taking the writers' lock") from exc
            self._writers_held += 1

    def _release_writers_lock(self) -> None:
        with self._writers_count_lock:
            self._writers_held -= 1
            if self._writers_held == 0 and self._writers_fd is not None:
                fcntl.lockf(self._writers_fd, fcntl.LOCK_UN)

    def _batch_done(self, handle: _LmdbBatch) -> None:
        """The batch was committed or aborted: it no longer needs the writers' lock."""
        if handle.locking:
            handle.locking = False
            self._release_writers_lock()

    def _counted_snapshot(self) -> tuple[lmdb.Transaction, object]:
        """A read transaction for a batch, and the gate's token that counts it."""
        gate = self._gate
        token = gate.token  # counted by the gate while this frame or the batch holds it
        while gate.resizing:
            del token
            gate.wait_resize()
            token = gate.token
        return self._begin_lmdb_read(), token

    def _snapshot_of(self, handle: _LmdbBatch) -> lmdb.Transaction:
        snapshot = handle.snapshot
        if snapshot is None:  # released for a resize while the batch stayed open
            snapshot, handle.token = self._counted_snapshot()
            handle.snapshot = snapshot
        return snapshot

    def _release_snapshot(self, batch: _LmdbBatch) -> None:
        if batch.snapshot is not None:
            try:
                batch.snapshot.abort()
            finally:
                batch.snapshot = None
                batch.token = None

    _batch_seal = _release_snapshot  # type: ignore[assignment]  # handle is an _LmdbBatch

    def _batch_get(self, handle: _LmdbBatch, key: bytes) -> bytes | None:
        v = handle.pending.changes.get(key, _MISSING)
        if v is not _MISSING:
            return v  # type: ignore[return-value]
        if handle.base is not None:
            v = handle.base.changes.get(key, _MISSING)
            if v is not _MISSING:
                return v  # type: ignore[return-value]
        return self._snapshot_of(handle).get(_KEY_PREFIX + key)  # type: ignore[return-value]

    def _batch_scan(
        self, handle: _LmdbBatch, lo: bytes, hi: bytes | None, reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        base = _scan_db(self._snapshot_of(handle), lo, hi, reverse)
        if handle.base is not None:
            base = handle.base.overlay_scan(base, lo, hi, reverse)
        return handle.pending.overlay_scan(base, lo, hi, reverse)

    def _batch_apply(self, handle: _LmdbBatch, writes: dict[bytes, bytes | None]) -> None:
        handle.pending.changes.update(writes)

    def _batch_write(self, handle: _LmdbBatch) -> None:
        """Put the batch's changes into an LMDB write transaction, not yet committed."""
        self._release_snapshot(handle)
        try:
            self._maybe_grow()
        except errors.EngineError:
            pass  # try the write anyway: it may fit, and the commit grows or reports
        txn = self._env.begin(write=True, db=self._data)
        try:
            _put_all(txn, handle.pending.changes)
        except BaseException:
            txn.abort()
            raise
        handle.written = txn

    def _batch_commit(self, handle: _LmdbBatch) -> None:
        try:
            self._commit_batch(handle)
        finally:
            self._batch_done(handle)

    def _commit_batch(self, handle: _LmdbBatch) -> None:
        self._release_snapshot(handle)
        changes = handle.pending.changes
        written, handle.written = handle.written, None
        if written is not None:
            try:
                written.commit()
                return
            except (lmdb.MapFullError, lmdb.MapResizedError):
                pass  # written again below, after growing the map
            except lmdb.Error as exc:
                raise self._commit_error(exc, changes) from exc
        try:
            self._maybe_grow()
        except errors.EngineError:
            pass  # try the write anyway: it may fit, and MapFull below grows or reports
        for _attempt in range(64):
            try:
                with self._env.begin(write=True, db=self._data) as txn:
                    _put_all(txn, changes)
                return
            except lmdb.MapFullError:
                self._grow_map()
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
            except lmdb.Error as exc:
                raise self._commit_error(exc, changes) from exc
        raise errors.StoreFullError("the LMDB map could not be grown enough for this write")

    def _commit_error(
        self, exc: lmdb.Error, changes: dict[bytes, bytes | None]
    ) -> errors.EngineError:
        error = _wrap(exc, "committing")
        if isinstance(error, errors.DurabilityError):
            # LMDB reports a short write (the disk filled up, or the file reached the file-size
            # limit, mid-page) as EIO: tell a full disk from a failing one.
            payload = sum(len(k) + len(v or b"") for k, v in changes.items())
            reason = out_of_space(self.path, (os.path.join(self.path, "data.mdb"),),
                                  needed=max(1 << 16, 2 * payload))
            if reason is not None:
                error = errors.StoreFullError(f"committing: {reason} ({exc})")
        return error

    def _batch_abort(self, handle: _LmdbBatch) -> None:
        # The pending changes stay: a batch opened during this one's flush may still read through
        # them (it fails with this one, but its reads must stay consistent until then).
        try:
            self._release_snapshot(handle)
            written, handle.written = handle.written, None
            if written is not None:
                written.abort()
        finally:
            self._batch_done(handle)
