"""The file backend's store: opening, locking across processes, catching up with other
processes, read transactions and group-committed writes (compaction: compaction.py)."""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None  # type: ignore[assignment]

from engine import errors
from engine.backends.common import (
    backup_directory,
    check_metadata,
    fsync_directory,
    metadata_record,
)
from engine.backends.file.compaction import Compaction
from engine.backends.file.format import (
    JOURNAL_NAME,
    LOCK_NAME,
    META_NAME,
    SNAPSHOT_NAME,
    VERSION,
    JournalRead,
    frozen_seq,
    journal_batch,
    parse_journal,
    parse_snapshot,
    write_snapshot,
)
from engine.backends.file.osio import (
    FULL_ERRNOS,
    file_id,
    pwrite_all,
    read_range,
    unlink_quietly,
    write_all,
    write_failure,
)
from engine.backends.file.table import Committed
from engine.batching import BatchingStore, WriteSet
from engine.interface import Transaction, check_key, limited

log = logging.getLogger(__name__)

PROVIDER = "file"
#: Temporary files are ``<final name>.tmp-<pid>-<random>`` in the store's directory (os.replace is
#: atomic only within one filesystem); a writer removes leftovers of a crash at open.
TMP_MARK = ".tmp-"

#: The journal is compacted once it is larger than this and larger than the snapshot.
DEFAULT_COMPACT_MIN_BYTES = 4 * 1024 * 1024

_NO_LOCK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOLCK", "EOPNOTSUPP", "ENOTSUP", "ENOSYS")
    if hasattr(errno, name)
)


def _open_failure(exc: OSError, what: str) -> errors.EngineError:
    if exc.errno in FULL_ERRNOS:
        return errors.StoreFullError(f"{what}: {exc.strerror}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
        return errors.ConfigurationError(f"{what}: {exc}")
    return errors.EngineError(f"{what}: {exc}")


class _FileBatch:
    """The open batch: where its journal line will go, and its members' changes merged."""

    __slots__ = ("start", "pending", "done")

    def __init__(self, start: int) -> None:
        self.start = start
        self.pending: dict[bytes, bytes | None] = {}
        self.done = False


class FileReadTransaction(Transaction):
    """A read transaction: the committed records as of its start, never blocking a writer."""

    write = False

    def __init__(self, store: FileStore, committed: Committed, version: int) -> None:
        self._store = store
        self._committed = committed
        self._version = version
        # A reader dropped without commit/abort must not pin its version (and grow the history)
        # forever. The finalizer only queues the release: it may run inside the garbage collector
        # at any point, even while this thread holds the state lock.
        self._finalizer = weakref.finalize(self, store._released_pins.append, (committed, version))

    def _check_open(self) -> None:
        if self._closed:
            raise errors.TransactionClosedError("the transaction is already closed")
        if self._store._closed:
            raise errors.StoreClosedError("the store was closed")

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        key = check_key(key)
        with self._store._state_lock:
            return self._committed.value_at(key, self._version)

    def _scan(
        self, lo: bytes, hi: bytes | None, reverse: bool, limit: int | None
    ) -> Iterator[tuple[bytes, bytes]]:
        return limited(self._iter(lo, hi, reverse), limit)

    def _iter(self, lo: bytes, hi: bytes | None, reverse: bool) -> Iterator[tuple[bytes, bytes]]:
        after: bytes | None = None
        size = 32  # small first, for scans with a small limit
        while True:
            self._check_open()
            with self._store._state_lock:
                pairs, after, exhausted = self._committed.chunk(
                    self._version, lo, hi, after, reverse, size
                )
            yield from pairs
            if exhausted:
                return
            size = min(size * 2, 1024)

    def commit(self) -> None:
        if self._closed:
            raise errors.TransactionClosedError("the transaction is already closed")
        self._release()

    def abort(self) -> None:
        if not self._closed:
            self._release()

    def _release(self) -> None:
        self._closed = True
        if self._finalizer.detach() is not None:
            with self._store._state_lock:
                self._committed.unpin(self._version)


class FileStore(Compaction, BatchingStore):
    """The store as JSON files under the directory ``path`` (see the module's documentation)."""

    provider = PROVIDER

    def __init__(
        self,
        path: str,
        *,
        readonly: bool = False,
        create: bool = True,
        sync: bool = True,
        compact_min_bytes: int = DEFAULT_COMPACT_MIN_BYTES,
    ) -> None:
        super().__init__()
        self.path = os.path.abspath(os.fspath(path))
        self.readonly = readonly
        self._sync = sync
        self._compact_min_bytes = int(compact_min_bytes)
        self._closed = False
        self._meta: dict[str, Any] = {}
        # Guards the committed records and the journal position that readers compare against.
        self._state_lock = threading.Lock()
        self._released_pins: list[tuple[Committed, int]] = []
        self._committed = Committed({})
        self._lock_fd = -1
        self._journal_fd = -1  # -1 only while journal.jsonl is missing (a crash mid-switch)
        self._journal_id = (0, 0)
        self._snapshot_size = 0
        self._frozen_bytes = 0  # closed journal segments the snapshot does not cover yet
        self._offset = 0  # the journal's length as far as the committed records reflect it
        self._seq = 0  # the last sequence in the committed records
        self._snap_seq = 0
        self._journal_last_seq: int | None = None  # the last entry since the snapshot, if any
        self._ex_held = False  # a batch of ours holds LOCK_EX and is caught up with the disk
        self._tail_dirty = False  # a failed batch's line could not be truncated away
        self._compactions = 0
        self._compact_retry_at = 0
        # Held for as long as a compaction runs (by its thread, or by compact()'s caller).
        self._compaction_lock = threading.Lock()
        self._compactor: threading.Thread | None = None
        if fcntl is None:
            raise errors.ConfigurationError("the file backend needs fcntl.flock (a POSIX system)")
        try:
            self._open(create)
        except BaseException:
            self._close_fds()
            raise

    # -- opening -------------------------------------------------------------------------------
    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _open(self, create: bool) -> None:
        meta_path = self._file(META_NAME)
        if not os.path.exists(meta_path):
            if self.readonly or not create:
                raise errors.StoreNotFoundError(f"no file store at {self.path}")
            try:
                os.makedirs(self.path, exist_ok=True)
            except OSError as exc:
                raise _open_failure(exc, f"cannot create the store directory {self.path}")
        self._lock_fd = self._open_lock_file()
        self._flock(fcntl.LOCK_SH if self.readonly else fcntl.LOCK_EX)
        try:
            if not self.readonly:
                if not os.path.exists(meta_path):  # checked again: another process may have won
                    self._initialise()
                self._remove_temp_files()
            self._meta = self._load_meta()
            self._load_all(exclusive=not self.readonly)
            if not self.readonly:
                if self._meta["format_version"] < VERSION:
                    self._upgrade()
                self._prune_frozen(self._snap_seq)
        except OSError as exc:
            raise _open_failure(exc, f"cannot open the file store at {self.path}")
        finally:
            self._funlock()

    def _open_lock_file(self) -> int:
        lock_path = self._file(LOCK_NAME)
        try:
            if self.readonly:
                try:
                    return os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    pass  # a copied store without its lock file: make one if we may
            return os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise _open_failure(exc, f"cannot open the lock file {lock_path}")

    def _initialise(self) -> None:
        # meta.json is written last, so it marks a finished creation. Files without it are the
        # remains of a creation that crashed, which hold nothing; anything else was not ours.
        journal, snapshot = self._file(JOURNAL_NAME), self._file(SNAPSHOT_NAME)
        if os.path.exists(journal) and os.path.getsize(journal) > 0:
            raise errors.CorruptStoreError(f"{self.path} has a journal but no {META_NAME}")
        if os.path.exists(snapshot):
            with open(snapshot, "rb") as f:  # never torn: it is written by os.replace
                values, seq = parse_snapshot(f.read(), snapshot)
            if values or seq:
                raise errors.CorruptStoreError(f"{self.path} has a snapshot but no {META_NAME}")
        self._replace_file(JOURNAL_NAME, lambda fd: None)
        self._replace_file(SNAPSHOT_NAME, lambda fd: write_snapshot(fd, (), 0))
        self._write_meta(metadata_record(PROVIDER, version=VERSION))
        self._fsync_dir(os.path.dirname(self.path))  # the store directory may be new

    def _write_meta(self, meta: dict[str, Any]) -> None:
        raw = json.dumps(meta, indent=2).encode("utf-8") + b"\n"
        self._replace_file(META_NAME, lambda fd: write_all(fd, raw))

    def _pinned_reader(self) -> FileReadTransaction:
        """A read transaction of the state as it is now (for a snapshot written meanwhile)."""
        with self._state_lock:
            committed = self._committed
            version = committed.pin()
        return FileReadTransaction(self, committed, version)

    def _reopen_journal(self) -> None:
        journal_fd = os.open(self._file(JOURNAL_NAME), os.O_RDWR | os.O_CLOEXEC)
        st = os.fstat(journal_fd)
        with self._state_lock:
            old_fd, self._journal_fd = self._journal_fd, journal_fd
            self._journal_id = file_id(st)
            self._offset = st.st_size
        if old_fd >= 0:
            os.close(old_fd)

    def _remove_temp_files(self) -> None:
        for name in os.listdir(self.path):
            if TMP_MARK in name:
                try:
                    os.unlink(self._file(name))
                except OSError:
                    pass

    def _load_meta(self) -> dict[str, Any]:
        meta_path = self._file(META_NAME)
        with open(meta_path, "rb") as f:
            raw = f.read()
        try:
            meta = json.loads(raw)
        except ValueError as exc:
            raise errors.CorruptStoreError(f"{meta_path} is not JSON: {exc}")
        if not isinstance(meta, dict):
            raise errors.CorruptStoreError(f"{meta_path} is not a JSON object")
        check_metadata(meta, PROVIDER, meta_path, newest=VERSION)
        return meta

    def _frozen_segments(self) -> list[tuple[int, str]]:
        """The closed journal segments in the directory, as (last entry, name), oldest first."""
        found = []
        for name in os.listdir(self.path):
            seq = frozen_seq(name)
            if seq is not None:
                found.append((seq, name))
        return sorted(found)

    def _load_all(self, *, exclusive: bool) -> None:
        """(Re)load the snapshot and the journal; the caller holds the file lock."""
        snapshot_path, journal_path = self._file(SNAPSHOT_NAME), self._file(JOURNAL_NAME)
        journal_fd = -1
        try:
            try:
                with open(snapshot_path, "rb") as f:
                    raw = f.read()
            except FileNotFoundError as exc:
                raise errors.CorruptStoreError(f"{self.path} lacks {exc.filename}")
            values, snap_seq = parse_snapshot(raw, snapshot_path)
            committed = Committed(values)
            last_seq: int | None = None
            frozen_bytes = 0
            segments = self._frozen_segments()
            for seg_seq, name in segments:
                if seg_seq <= snap_seq:
                    continue  # covered by the snapshot: left by a compaction that crashed
                with open(self._file(name), "rb") as f:
                    data = f.read()
                read = parse_journal(data, 0, last_seq, snap_seq, self._file(name))
                if read.torn_bytes or read.last_seq != seg_seq:
                    raise errors.CorruptStoreError(
                        f"{self._file(name)} ends at entry {read.last_seq}, not {seg_seq}"
                        + (f", with {read.torn_bytes} unfinished bytes" if read.torn_bytes else "")
                    )
                committed.publish(read.changes)
                last_seq = read.last_seq
                frozen_bytes += len(data)
            try:
                journal_fd = os.open(
                    journal_path, (os.O_RDONLY if self.readonly else os.O_RDWR) | os.O_CLOEXEC
                )
            except FileNotFoundError:
                # A switch to a new segment renamed the journal and crashed before creating the
                # new one: it is empty. A store with no segment at all lost its journal.
                if not segments:
                    raise errors.CorruptStoreError(f"{self.path} lacks {journal_path}")
                if exclusive:
                    journal_fd = self._create_journal()
            if journal_fd >= 0:
                journal_st = os.fstat(journal_fd)
                data = read_range(journal_fd, 0, journal_st.st_size)
            else:
                journal_st, data = None, b""
            read = parse_journal(data, 0, last_seq, snap_seq, journal_path)
            committed.publish(read.changes)
            if read.torn_bytes:
                self._drop_torn_tail(journal_fd, read, exclusive)
        except BaseException:
            if journal_fd >= 0:
                os.close(journal_fd)
            raise
        with self._state_lock:
            old_fd = self._journal_fd
            self._committed = committed
            self._journal_fd = journal_fd
            self._journal_id = file_id(journal_st) if journal_st is not None else (0, 0)
            self._snapshot_size = len(raw)
            self._frozen_bytes = frozen_bytes
            self._snap_seq = snap_seq
            self._journal_last_seq = read.last_seq
            self._seq = max(snap_seq, read.last_seq or 0)
            self._offset = read.end
        if old_fd >= 0:
            os.close(old_fd)

    def _create_journal(self) -> int:
        """Create an empty journal.jsonl (absent until now) and make its name durable."""
        fd = os.open(
            self._file(JOURNAL_NAME), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666
        )
        try:
            self._fsync_dir(self.path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _drop_torn_tail(self, journal_fd: int, read: JournalRead, exclusive: bool) -> None:
        if not exclusive:
            return  # only a writer may change the file; a reader just stops before the tail
        log.warning(
            "%s: dropping %d bytes of a write that a crash interrupted",
            self._file(JOURNAL_NAME),
            read.torn_bytes,
        )
        os.ftruncate(journal_fd, read.end)
        if self._sync:
            os.fsync(journal_fd)

    def _catch_up(self, *, exclusive: bool) -> None:
        """Take in what other processes committed; the caller holds the file lock."""
        try:
            journal_st = os.stat(self._file(JOURNAL_NAME))
        except FileNotFoundError:
            self._load_all(exclusive=exclusive)
            return
        if file_id(journal_st) != self._journal_id or journal_st.st_size < self._offset:
            # Another process started a new journal segment (to compact): the records are the
            # same, but where the next entries go is not. Reading everything again is simplest.
            self._load_all(exclusive=exclusive)
            return
        if journal_st.st_size == self._offset:
            return
        data = read_range(self._journal_fd, self._offset, journal_st.st_size)
        read = parse_journal(
            data, self._offset, self._journal_last_seq, self._snap_seq, self._file(JOURNAL_NAME)
        )
        if read.torn_bytes:
            self._drop_torn_tail(self._journal_fd, read, exclusive)
        with self._state_lock:
            self._committed.publish(read.changes)
            self._journal_last_seq = read.last_seq
            self._seq = max(self._snap_seq, read.last_seq or 0)
            self._offset = read.end

    # -- locking -------------------------------------------------------------------------------
    def _flock(self, op: int) -> None:
        try:
            fcntl.flock(self._lock_fd, op)
        except OSError as exc:
            if exc.errno in _NO_LOCK_ERRNOS:
                # Running unlocked would let two processes interleave their journal appends.
                raise errors.ConfigurationError(
                    f"the file backend needs flock() on {self._file(LOCK_NAME)}, which this "
                    f"filesystem does not support ({exc.strerror}); put the data directory on a "
                    "local filesystem or choose another provider"
                ) from exc
            raise errors.EngineError(f"cannot lock {self._file(LOCK_NAME)}: {exc}") from exc

    def _funlock(self) -> None:
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        except OSError:
            pass  # closing the descriptor releases it in any case

    # -- durable files -------------------------------------------------------------------------
    def _fsync_dir(self, path: str) -> None:
        if not self._sync:
            return
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # some filesystems cannot sync a directory
                raise
        finally:
            os.close(fd)

    def _write_temp(self, name: str, write: Callable[[int], None]) -> tuple[str, int]:
        """A durable temp file for ``name`` holding what ``write`` wrote: (its path, its size)."""
        tmp = self._file(f"{name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            write(fd)
            if self._sync:
                os.fsync(fd)
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            unlink_quietly(tmp)
            raise
        os.close(fd)
        return tmp, size

    def _replace_file(self, name: str, write: Callable[[int], None]) -> int:
        """Write ``name`` whole or not at all: temp file, fsync, os.replace, fsync the directory."""
        tmp, size = self._write_temp(name, write)
        try:
            os.replace(tmp, self._file(name))
        except BaseException:
            unlink_quietly(tmp)
            raise
        self._fsync_dir(self.path)
        return size

    # -- the Store interface -------------------------------------------------------------------
    def begin(self, write: bool = False) -> Transaction:
        if self._closed:
            raise errors.StoreClosedError("the store was closed")
        if write:
            if self.readonly:
                raise errors.ReadOnlyError(f"the store at {self.path} was opened read-only")
            return self._begin_write()
        # While a batch of ours holds LOCK_EX, no other process can have written since it caught
        # up (and this thread may be that batch's writer: catching up would wait for itself).
        if not self._ex_held and not getattr(self._local, "writing", False):
            if self._journal_changed():
                self._refresh()
        with self._state_lock:
            while self._released_pins:
                committed, version = self._released_pins.pop()
                committed.unpin(version)
            committed = self._committed
            version = committed.pin()
        return FileReadTransaction(self, committed, version)

    def _journal_changed(self) -> bool:
        try:
            st = os.stat(self._file(JOURNAL_NAME))
        except OSError:
            return True  # let the careful path report it
        with self._state_lock:
            return file_id(st) != self._journal_id or st.st_size != self._offset

    def _refresh(self) -> None:
        # Under the writer mutex: catching up uses the journal descriptor and the lock file,
        # which this process's writers use too.
        with self._writer_mutex:
            if self._closed:
                raise errors.StoreClosedError("the store was closed")
            if self._ex_held:
                return
            self._flock(fcntl.LOCK_SH)
            try:
                self._catch_up(exclusive=False)
            except OSError as exc:
                raise errors.EngineError(f"cannot read the file store at {self.path}: {exc}")
            finally:
                self._funlock()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True  # writers queued behind the mutex now fail instead of starting
        try:
            self._drain_writers()
            compactor = self._compactor
            if compactor is not None:
                compactor.join()  # it stops at its next chunk: its reads fail once closed
        finally:
            with self._writer_mutex:
                self._close_fds()

    def _close_fds(self) -> None:
        for name in ("_journal_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                try:
                    os.close(fd)
                except OSError:
                    pass

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._meta)

    def backup(self, directory: str, *, compact: bool = True) -> None:
        # A lock of its own (a descriptor of its own: flock locks belong to the open file), shared:
        # writers of every process hold LOCK_EX for a whole batch, compaction included, so under
        # LOCK_SH the snapshot and journal are a committed state and stay one while we copy them.
        if self._closed:
            raise errors.StoreClosedError(f"the store at {self.path} is closed")
        target = backup_directory(directory)
        lock_fd = os.open(self._file(LOCK_NAME), os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_SH)
            names = [META_NAME, SNAPSHOT_NAME, *(n for _s, n in self._frozen_segments())]
            if os.path.exists(self._file(JOURNAL_NAME)):
                names.append(JOURNAL_NAME)
            for name in names:
                with open(self._file(name), "rb") as fsrc, \
                        open(os.path.join(target, name), "wb") as fdst:
                    shutil.copyfileobj(fsrc, fdst)
                    fdst.flush()
                    os.fsync(fdst.fileno())
        except OSError as exc:
            raise errors.EngineError(f"file backup to {target} failed: {exc}") from exc
        finally:
            os.close(lock_fd)  # releases the lock
        with open(os.path.join(target, LOCK_NAME), "wb"):
            pass
        fsync_directory(target)

    def stats(self) -> dict[str, Any]:
        with self._state_lock:
            committed = self._committed
            return {
                "provider": self.provider,
                "path": self.path,
                "readonly": self.readonly,
                "records": len(committed.keys),
                "bytes": committed.nbytes,
                "journal_bytes": self._offset,
                "snapshot_bytes": self._snapshot_size,
                "seq": self._seq,
                "snapshot_seq": self._snap_seq,
                "compactions": self._compactions,
            }

    # -- BatchingStore hooks (called under the writer mutex) -----------------------------------
    def _check_writable(self) -> None:
        if self._closed:
            raise errors.StoreClosedError("the store was closed")
        if self.readonly:
            raise errors.ReadOnlyError(f"the store at {self.path} was opened read-only")

    def _batch_open(self) -> _FileBatch:
        self._flock(fcntl.LOCK_EX)
        try:
            if self._tail_dirty:
                # Our own failed batch is still in the journal: it must go before anyone reads it
                # as committed, and before we append after it.
                try:
                    os.ftruncate(self._journal_fd, self._offset)
                except OSError as exc:
                    raise errors.DurabilityError(
                        f"cannot remove a failed write from {self._file(JOURNAL_NAME)}: {exc}"
                    )
                self._tail_dirty = False
            self._catch_up(exclusive=True)
        except OSError as exc:
            self._funlock()
            raise errors.EngineError(f"cannot read the file store at {self.path}: {exc}")
        except BaseException:
            self._funlock()
            raise
        self._ex_held = True
        return _FileBatch(self._offset)

    def _batch_get(self, handle: _FileBatch, key: bytes) -> bytes | None:
        value = handle.pending.get(key, handle)
        if value is not handle:
            return value  # type: ignore[return-value]
        # Only writers (holding the writer mutex, as we do) change the current values.
        return self._committed.values.get(key)

    def _batch_scan(
        self, handle: _FileBatch, lo: bytes, hi: bytes | None, reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        base = self._scan_current(lo, hi, reverse)
        if not handle.pending:
            return base
        earlier = WriteSet()
        earlier.changes = handle.pending
        return earlier.overlay_scan(base, lo, hi, reverse)

    def _scan_current(
        self, lo: bytes, hi: bytes | None, reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        committed = self._committed
        after: bytes | None = None
        size = 64
        while True:
            with self._state_lock:
                pairs, after, exhausted = committed.chunk(
                    committed.version, lo, hi, after, reverse, size
                )
            yield from pairs
            if exhausted:
                return
            size = min(size * 2, 1024)

    def _batch_apply(self, handle: _FileBatch, writes: dict[bytes, bytes | None]) -> None:
        handle.pending.update(writes)

    def _batch_commit(self, handle: _FileBatch) -> None:
        try:
            if not handle.pending:
                return
            seq = self._seq + 1
            line = journal_batch(seq, handle.pending)
            try:
                pwrite_all(self._journal_fd, line, handle.start)
                if self._sync:
                    os.fsync(self._journal_fd)
            except OSError as exc:
                self._forget_append(handle.start)
                raise write_failure(exc, f"appending to {self._file(JOURNAL_NAME)}") from exc
            # Durable: now, and only now, readers may see the batch.
            with self._state_lock:
                self._committed.publish(handle.pending)
                self._seq = self._journal_last_seq = seq
                self._offset = handle.start + len(line)
            self._maybe_compact()
        finally:
            self._end_batch(handle)

    def _forget_append(self, start: int) -> None:
        """Best effort: cut a failed batch's line off the journal (we still hold LOCK_EX)."""
        try:
            os.ftruncate(self._journal_fd, start)
        except OSError as exc:
            self._tail_dirty = True  # retried at the next batch, refused until it succeeds
            log.error("%s: cannot truncate a failed write: %s", self._file(JOURNAL_NAME), exc)
            return
        if self._sync:
            try:
                os.fsync(self._journal_fd)
            except OSError:
                pass  # the truncation stands in the page cache; no reader can see the line

    def _batch_abort(self, handle: _FileBatch) -> None:
        self._end_batch(handle)

    def _end_batch(self, handle: _FileBatch) -> None:
        if handle.done:
            return  # _flush aborts a batch whose commit failed; the commit ended it already
        handle.done = True
        self._ex_held = False
        self._funlock()
