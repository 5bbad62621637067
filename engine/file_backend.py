"""The file backend: the store as JSON files a person can read, in one directory.

Files under ``path``:

``meta.json``
    The metadata record (format, version, backend), written once at creation, checked at open.
``snapshot.json``
    Every record as of journal sequence ``seq``, one ``[key, value]`` pair per line, in key order.
    The first line carries ``seq``, the record count and a CRC-32 of everything after that line.
``journal.jsonl``
    One line per flushed batch since the snapshot (or a little before it, see below)::

        {"crc32": "1a2b3c4d", "entry": {"seq": 7, "put": [["key", "value"]], "delete": ["gone"]}}

    The CRC-32 covers the exact bytes of the ``entry`` object as they stand in the line.
``lock``
    Empty; ``flock``'ed exclusively by a writer for a whole batch, shared by a reader catching up.

Keys and values are JSON strings when their bytes are valid UTF-8, else ``{"base64": "..."}``.

Crash safety. A batch is one journal line written with one ``pwrite`` and then fsync'ed; only then
is it visible to readers and acknowledged. A crash mid-write leaves a torn last line, which the next
open drops (and a writer truncates away); a damaged line with valid lines after it is not a torn
write but damage, and refuses to open. When the journal outgrows ``max(compact_min_bytes, size of
the snapshot)`` the writer compacts: it writes a new snapshot covering the journal's last sequence
(temp file, fsync, ``os.replace``, fsync of the directory), then replaces the journal by an empty
one the same way. A crash between the two leaves an old journal whose entries are all covered by
the snapshot: replay skips entries at or below the snapshot's ``seq``, and the next writer resets
the journal. Writing the snapshot costs its size, but it happens only after at least as many bytes
went to the journal, so compaction is amortised O(1) per byte written.

Isolation in a process. The committed records live in memory (:class:`_Committed`: a dict and
a chunked sorted key list). Read transactions never block writers: each pins the version it began
at, and while any reader is pinned, a commit keeps the values it replaces in a per-key history,
so that an old reader still sees its version; the history is dropped when the readers are gone
(as LMDB keeps old pages for old readers). A write transaction sees the committed records plus
the pending changes of the batch's earlier members, and the batch is published only after its
journal line is durable.

Several processes. A writer holds ``LOCK_EX`` from the start of its batch to its end and, before
anything else, catches up with what other processes appended (the journal grew) or compacted (the
journal or snapshot file was replaced: its inode differs from the one we hold open, so inode reuse
cannot fool the check). A read transaction stats the journal when it begins; if the file changed,
it catches up under ``LOCK_SH``, which waits for a writer in another process to finish its batch,
so a reader never sees another process's batch before that batch is durable. Readers in other
processes (the dump tool) open with ``readonly=True`` and work the same way.
"""

from __future__ import annotations

import base64
import bisect
import errno
import json
import logging
import os
import re
import secrets
import threading
import weakref
import zlib
from collections.abc import Callable, Iterator
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None  # type: ignore[assignment]

from engine import errors
from engine.base import (
    BatchingStore,
    Transaction,
    WriteSet,
    _limited,
    check_key,
    check_limit,
    check_metadata,
    metadata_record,
    scan_bounds,
)

log = logging.getLogger(__name__)

PROVIDER = "file"
META_NAME = "meta.json"
SNAPSHOT_NAME = "snapshot.json"
JOURNAL_NAME = "journal.jsonl"
LOCK_NAME = "lock"
#: Temporary files are ``<final name>.tmp-<pid>-<random>`` in the store's directory (os.replace is
#: atomic only within one filesystem); a writer removes leftovers of a crash at open.
TMP_MARK = ".tmp-"

#: The journal is compacted once it is larger than this and larger than the snapshot.
DEFAULT_COMPACT_MIN_BYTES = 4 * 1024 * 1024

_FULL_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, name)
)
_NO_LOCK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOLCK", "EOPNOTSUPP", "ENOTSUP", "ENOSYS")
    if hasattr(errno, name)
)

_LINE_HEAD = b'{"crc32": "'
_LINE_MID = b'", "entry": '
_LINE_END = b"}"
_CRC_END = len(_LINE_HEAD) + 8
_PAYLOAD_START = _CRC_END + len(_LINE_MID)
_HEX8 = re.compile(rb"[0-9a-f]{8}")
_READ_CHUNK = 1 << 24


# -- encoding ----------------------------------------------------------------------------------


def _encode_bytes(data: bytes) -> str | dict[str, str]:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def _decode_bytes(obj: Any) -> bytes:
    """Raises ValueError (caught by the callers, who know where it was) on anything else."""
    if isinstance(obj, str):
        return obj.encode("utf-8")  # a lone surrogate escape raises UnicodeEncodeError
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(obj.get("base64"), str):
        return base64.b64decode(obj["base64"], validate=True)
    raise ValueError(f"not an encoded key or value: {obj!r:.60}")


def _journal_line(seq: int, changes: dict[bytes, bytes | None]) -> bytes:
    puts = [[_encode_bytes(k), _encode_bytes(v)] for k, v in changes.items() if v is not None]
    deletes = [_encode_bytes(k) for k, v in changes.items() if v is None]
    payload = json.dumps({"seq": seq, "put": puts, "delete": deletes}, ensure_ascii=False).encode(
        "utf-8"
    )
    return b"".join(
        (_LINE_HEAD, b"%08x" % zlib.crc32(payload), _LINE_MID, payload, _LINE_END, b"\n")
    )


def _parse_line(line: bytes) -> tuple[int, dict[bytes, bytes | None]] | None:
    """A journal line (without its newline) as (seq, changes); None if torn or failing its CRC.

    A line whose CRC matches but whose content is malformed was written whole, so it is damage
    rather than a torn write: it raises CorruptStoreError.
    """
    if (
        len(line) <= _PAYLOAD_START
        or not line.startswith(_LINE_HEAD)
        or line[_CRC_END:_PAYLOAD_START] != _LINE_MID
        or not line.endswith(_LINE_END)
        or not _HEX8.fullmatch(line[len(_LINE_HEAD) : _CRC_END])
    ):
        return None
    payload = line[_PAYLOAD_START : -len(_LINE_END)]
    if zlib.crc32(payload) != int(line[len(_LINE_HEAD) : _CRC_END], 16):
        return None
    try:
        entry = json.loads(payload)
        seq = entry["seq"]
        if type(seq) is not int or seq < 1:
            raise ValueError(f"bad seq {seq!r}")
        changes: dict[bytes, bytes | None] = {}
        for key in entry["delete"]:
            changes[_decode_bytes(key)] = None
        for key, value in entry["put"]:
            changes[_decode_bytes(key)] = _decode_bytes(value)
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.CorruptStoreError(f"a journal entry with a valid checksum is malformed: {exc}")
    return seq, changes


class _JournalRead:
    """What parsing a stretch of the journal found."""

    __slots__ = ("changes", "end", "torn_bytes", "last_seq", "stale")

    def __init__(self) -> None:
        self.changes: dict[bytes, bytes | None] = {}  # the new entries, merged in order
        self.end = 0  # file offset just after the last good line
        self.torn_bytes = 0  # bytes after ``end`` that a crash left unfinished
        self.last_seq: int | None = None
        self.stale = False  # some entries were already covered by the snapshot


def _parse_journal(
    data: bytes, start: int, prev_seq: int | None, snap_seq: int, where: str
) -> _JournalRead:
    """Parse ``data``, the journal's bytes from file offset ``start`` to its end.

    ``prev_seq`` is the sequence of the line just before ``start`` (None at the file's start).
    """
    out = _JournalRead()
    out.last_seq = prev_seq
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        # A line without its newline is unfinished whatever it holds: the newline is written in
        # the same pwrite, and a batch is acknowledged only after the whole line is durable.
        record = _parse_line(data[pos:nl]) if nl >= 0 else None
        if record is None:
            if _has_valid_line(data, len(data) if nl < 0 else nl + 1):
                raise errors.CorruptStoreError(
                    f"{where}: the entry at byte {start + pos} is damaged and valid entries follow"
                    " it; this is not an interrupted write, so the store refuses to guess"
                )
            out.torn_bytes = len(data) - pos
            break
        seq, changes = record
        if out.last_seq is None:
            if seq > snap_seq + 1:
                raise errors.CorruptStoreError(
                    f"{where}: starts at entry {seq} but the snapshot covers only up to {snap_seq}"
                )
        elif seq != out.last_seq + 1:
            raise errors.CorruptStoreError(
                f"{where}: entry {seq} at byte {start + pos} follows entry {out.last_seq}"
            )
        out.last_seq = seq
        if seq > snap_seq:
            out.changes.update(changes)
        else:
            out.stale = True
        pos = nl + 1
    out.end = start + pos
    return out


def _has_valid_line(data: bytes, pos: int) -> bool:
    for line in data[pos:].split(b"\n"):
        try:
            if _parse_line(line) is not None:
                return True
        except errors.CorruptStoreError:
            return True  # checksummed, hence written whole: damage, not a torn tail
    return False


def _snapshot_chunks(committed: _Committed, seq: int) -> Iterator[bytes]:
    # The CRC placeholder is patched in place once the body is written (see _write_snapshot).
    count = len(committed.keys)
    yield (
        f'{{"snapshot": {{"seq": {seq}, "records": {count}, "crc32": "00000000"}}, "records": [\n'
    ).encode("ascii")
    rows: list[str] = []
    size = 0
    for i, key in enumerate(committed.keys):
        row = json.dumps(
            [_encode_bytes(key), _encode_bytes(committed.values[key])], ensure_ascii=False
        )
        rows.append(row if i == 0 else ",\n" + row)
        size += len(row)
        if size >= 1 << 20:
            yield "".join(rows).encode("utf-8")
            rows, size = [], 0
    rows.append("\n]}\n" if committed.keys else "]}\n")
    yield "".join(rows).encode("utf-8")


def _write_snapshot(fd: int, committed: _Committed, seq: int) -> None:
    chunks = _snapshot_chunks(committed, seq)
    header = next(chunks)
    _write_all(fd, header)
    crc = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
        _write_all(fd, chunk)
    crc_at = header.index(b'"crc32": "') + len(b'"crc32": "')
    _pwrite_all(fd, b"%08x" % crc, crc_at)


def _parse_snapshot(raw: bytes, where: str) -> tuple[dict[bytes, bytes], int]:
    try:
        doc = json.loads(raw)
        info = doc["snapshot"]
        seq, count, crc = info["seq"], info["records"], info["crc32"]
        if type(seq) is not int or seq < 0 or type(count) is not int:
            raise ValueError(f"bad header {info!r}")
        body = raw[raw.index(b"\n") + 1 :]
        if f"{zlib.crc32(body):08x}" != crc:
            raise ValueError("checksum mismatch")
        records = doc["records"]
        values = {_decode_bytes(k): _decode_bytes(v) for k, v in records}
        if len(records) != count or len(values) != count:
            raise ValueError(f"{len(records)} records ({len(values)} keys), header says {count}")
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.CorruptStoreError(f"{where} is damaged: {exc}")
    return values, seq


# -- small os helpers --------------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _read_range(fd: int, start: int, end: int) -> bytes:
    parts = []
    while start < end:
        chunk = os.pread(fd, min(end - start, _READ_CHUNK), start)
        if not chunk:
            break
        parts.append(chunk)
        start += len(chunk)
    return b"".join(parts)


def _file_id(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _write_failure(exc: OSError, what: str) -> errors.EngineError:
    if exc.errno in _FULL_ERRNOS:
        return errors.StoreFullError(f"{what}: {exc.strerror}; nothing was committed")
    return errors.DurabilityError(f"{what}: {exc}; the write was not committed")


def _open_failure(exc: OSError, what: str) -> errors.EngineError:
    if exc.errno in _FULL_ERRNOS:
        return errors.StoreFullError(f"{what}: {exc.strerror}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
        return errors.ConfigurationError(f"{what}: {exc}")
    return errors.EngineError(f"{what}: {exc}")


# -- the committed records ---------------------------------------------------------------------


class _SortedKeys:
    """Keys in bytewise order, kept as a list of sorted chunks.

    One flat sorted list would make every insert or delete move the whole tail of the list (an
    O(n) memmove that dominated a commit at a few hundred thousand keys); here it moves at most
    one chunk, and only a chunk split or merge touches the (n / LOAD)-long list of chunk maxima.
    """

    __slots__ = ("_chunks", "_maxes", "_len")

    LOAD = 1000

    def __init__(self, ordered: list[bytes] | None = None) -> None:
        ordered = ordered or []
        self._chunks = [ordered[i : i + self.LOAD] for i in range(0, len(ordered), self.LOAD)]
        self._maxes = [chunk[-1] for chunk in self._chunks]
        self._len = len(ordered)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            yield from chunk

    def add(self, key: bytes) -> None:
        """Insert ``key``, which must not be present."""
        chunks, maxes = self._chunks, self._maxes
        self._len += 1
        if not chunks:
            chunks.append([key])
            maxes.append(key)
            return
        i = bisect.bisect_left(maxes, key)
        if i == len(maxes):
            i -= 1
            chunks[i].append(key)
            maxes[i] = key
        else:
            bisect.insort(chunks[i], key)
        chunk = chunks[i]
        if len(chunk) > 2 * self.LOAD:
            half = len(chunk) // 2
            chunks[i : i + 1] = [chunk[:half], chunk[half:]]
            maxes[i : i + 1] = [chunk[half - 1], chunk[-1]]

    def remove(self, key: bytes) -> None:
        """Remove ``key``, which must be present."""
        chunks, maxes = self._chunks, self._maxes
        i = bisect.bisect_left(maxes, key)
        chunk = chunks[i]
        del chunk[bisect.bisect_left(chunk, key)]
        self._len -= 1
        if not chunk:
            del chunks[i]
            del maxes[i]
            return
        maxes[i] = chunk[-1]
        if len(chunk) < self.LOAD // 4 and len(chunks) > 1:
            # Keep chunks from dwindling to a list of near-empty ones after many deletes.
            j = i if i + 1 < len(chunks) else i - 1
            merged = chunks[j] + chunks[j + 1]
            chunks[j : j + 2] = [merged]
            maxes[j : j + 2] = [merged[-1]]

    def forward(self, key: bytes, inclusive: bool, n: int) -> list[bytes]:
        """Up to ``n`` keys from ``key`` on (past it unless ``inclusive``), ascending."""
        find = bisect.bisect_left if inclusive else bisect.bisect_right
        chunks = self._chunks
        i = find(self._maxes, key)
        out: list[bytes] = []
        if i < len(chunks):
            chunk = chunks[i]
            j = find(chunk, key)
            out.extend(chunk[j : j + n])
            i += 1
        while len(out) < n and i < len(chunks):
            out.extend(chunks[i][: n - len(out)])
            i += 1
        return out

    def backward(self, key: bytes | None, n: int) -> list[bytes]:
        """Up to ``n`` keys below ``key`` (below nothing if None), descending."""
        chunks = self._chunks
        if not chunks:
            return []
        i = len(chunks) if key is None else bisect.bisect_left(self._maxes, key)
        if key is None or i == len(chunks):
            i = len(chunks) - 1
            j = len(chunks[i])
        else:
            j = bisect.bisect_left(chunks[i], key)
        out: list[bytes] = []
        while i >= 0 and len(out) < n:
            chunk = chunks[i]
            out.extend(reversed(chunk[max(0, j - (n - len(out))) : j]))
            i -= 1
            j = len(chunks[i]) if i >= 0 else 0
        return out


class _Committed:
    """The committed records, plus what open readers need to keep seeing their own version.

    ``version`` counts publications. ``history[key]`` lists ``(version, previous value)`` for each
    publication that changed ``key`` while a reader was pinned, oldest first; a reader pinned at
    version ``p`` sees the previous value of the first entry newer than ``p``, else the current
    value. Guarded by the store's state lock.
    """

    __slots__ = ("values", "keys", "nbytes", "version", "history", "history_keys", "pins")

    def __init__(self, values: dict[bytes, bytes]) -> None:
        self.values = values
        self.keys = _SortedKeys(sorted(values))
        self.nbytes = sum(len(k) + len(v) for k, v in values.items())
        self.version = 0
        self.history: dict[bytes, list[tuple[int, bytes | None]]] = {}
        self.history_keys = _SortedKeys()
        self.pins: dict[int, int] = {}

    def publish(self, changes: dict[bytes, bytes | None]) -> None:
        version = self.version + 1
        keep_history = bool(self.pins)  # every pinned reader is older than ``version``
        values, keys = self.values, self.keys
        for key, value in changes.items():
            old = values.get(key)
            if old == value:
                continue
            if keep_history:
                entries = self.history.get(key)
                if entries is None:
                    self.history[key] = entries = []
                    self.history_keys.add(key)
                entries.append((version, old))
            if value is None:
                del values[key]
                keys.remove(key)
                self.nbytes -= len(key) + len(old)  # type: ignore[arg-type]
            else:
                if old is None:
                    keys.add(key)
                    self.nbytes += len(key) + len(value)
                else:
                    self.nbytes += len(value) - len(old)
                values[key] = value
        self.version = version

    def value_at(self, key: bytes, version: int) -> bytes | None:
        if version != self.version:
            for replaced_at, previous in self.history.get(key, ()):
                if replaced_at > version:
                    return previous
        return self.values.get(key)

    def pin(self) -> int:
        self.pins[self.version] = self.pins.get(self.version, 0) + 1
        return self.version

    def unpin(self, version: int) -> None:
        left = self.pins[version] - 1
        if left:
            self.pins[version] = left
            return
        del self.pins[version]
        if not self.pins:
            self.history, self.history_keys = {}, _SortedKeys()
            return
        oldest = min(self.pins)
        if version < oldest:
            # Entries at or below the oldest pinned version can no longer be anyone's answer.
            history = {}
            for key, entries in self.history.items():
                kept = [e for e in entries if e[0] > oldest]
                if kept:
                    history[key] = kept
            self.history, self.history_keys = history, _SortedKeys(sorted(history))

    def chunk(
        self,
        version: int,
        lo: bytes,
        hi: bytes | None,
        after: bytes | None,
        reverse: bool,
        size: int,
    ) -> tuple[list[tuple[bytes, bytes]], bytes | None, bool]:
        """Up to ``size`` keys of [lo, hi) past ``after``, as of ``version``.

        Returns (pairs, last key examined, exhausted). Scans go chunk by chunk, re-finding their
        place by key, so that a publication between two chunks cannot make them skip or repeat.
        """
        sources = [self.keys]
        if version != self.version and self.history_keys:
            sources.append(self.history_keys)  # keys deleted since ``version`` live only here
        picked: list[list[bytes]] = []
        for keys in sources:
            if not reverse:
                if after is None:
                    picked.append(keys.forward(lo, True, size))
                else:
                    picked.append(keys.forward(after, False, size))
            else:
                picked.append(keys.backward(hi if after is None else after, size))
        if len(picked) == 1:
            cand = picked[0]
        else:
            cand = sorted(set(picked[0]).union(picked[1]), reverse=reverse)[:size]
        exhausted = len(cand) < size
        if not reverse and hi is not None and cand and cand[-1] >= hi:
            cand = cand[: bisect.bisect_left(cand, hi)]
            exhausted = True
        elif reverse and cand and cand[-1] < lo:
            cand = [k for k in cand if k >= lo]
            exhausted = True
        pairs = []
        for key in cand:
            value = self.value_at(key, version)
            if value is not None:
                pairs.append((key, value))
        return pairs, (cand[-1] if cand else None), exhausted or not cand


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

    def __init__(self, store: FileStore, committed: _Committed, version: int) -> None:
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

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check_open()
        check_limit(limit)
        lo, hi = scan_bounds(start, end, prefix)
        if hi is not None and hi <= lo:
            return iter(())
        return _limited(self._iter(lo, hi, reverse), limit)

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


class FileStore(BatchingStore):
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
        self._released_pins: list[tuple[_Committed, int]] = []
        self._committed = _Committed({})
        self._lock_fd = -1
        self._journal_fd = -1
        self._snapshot_fd = -1  # held open so that its inode cannot be reused under our eyes
        self._journal_id = (0, 0)
        self._snapshot_id = (0, 0)
        self._snapshot_size = 0
        self._offset = 0  # the journal's length as far as the committed records reflect it
        self._seq = 0  # the last sequence in the committed records
        self._snap_seq = 0
        self._journal_last_seq: int | None = None  # the last line's sequence, None if empty
        self._journal_stale = False  # the journal holds entries the snapshot already covers
        self._ex_held = False  # a batch of ours holds LOCK_EX and is caught up with the disk
        self._tail_dirty = False  # a failed batch's line could not be truncated away
        self._compactions = 0
        self._compact_retry_at = 0
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
                self._try_reset_journal()
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
                values, seq = _parse_snapshot(f.read(), snapshot)
            if values or seq:
                raise errors.CorruptStoreError(f"{self.path} has a snapshot but no {META_NAME}")
        self._replace_file(JOURNAL_NAME, lambda fd: None)
        self._replace_file(SNAPSHOT_NAME, lambda fd: _write_snapshot(fd, _Committed({}), 0))
        meta = json.dumps(metadata_record(PROVIDER), indent=2).encode("utf-8") + b"\n"
        self._replace_file(META_NAME, lambda fd: _write_all(fd, meta))
        self._fsync_dir(os.path.dirname(self.path))  # the store directory may be new

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
        check_metadata(meta, PROVIDER, meta_path)
        return meta

    def _load_all(self, *, exclusive: bool) -> None:
        """(Re)load the snapshot and the journal; the caller holds the file lock."""
        snapshot_path, journal_path = self._file(SNAPSHOT_NAME), self._file(JOURNAL_NAME)
        snap_fd = journal_fd = -1
        try:
            try:
                snap_fd = os.open(snapshot_path, os.O_RDONLY | os.O_CLOEXEC)
                journal_fd = os.open(
                    journal_path, (os.O_RDONLY if self.readonly else os.O_RDWR) | os.O_CLOEXEC
                )
            except FileNotFoundError as exc:
                raise errors.CorruptStoreError(f"{self.path} lacks {exc.filename}")
            snap_st, journal_st = os.fstat(snap_fd), os.fstat(journal_fd)
            raw = _read_range(snap_fd, 0, snap_st.st_size)
            values, snap_seq = _parse_snapshot(raw, snapshot_path)
            data = _read_range(journal_fd, 0, journal_st.st_size)
            read = _parse_journal(data, 0, None, snap_seq, journal_path)
            committed = _Committed(values)
            committed.publish(read.changes)
            if read.torn_bytes:
                self._drop_torn_tail(journal_fd, read, exclusive)
        except BaseException:
            for fd in (snap_fd, journal_fd):
                if fd >= 0:
                    os.close(fd)
            raise
        with self._state_lock:
            old_fds = (self._snapshot_fd, self._journal_fd)
            self._committed = committed
            self._snapshot_fd, self._journal_fd = snap_fd, journal_fd
            self._snapshot_id, self._journal_id = _file_id(snap_st), _file_id(journal_st)
            self._snapshot_size = len(raw)
            self._snap_seq = snap_seq
            self._journal_last_seq = read.last_seq
            self._seq = max(snap_seq, read.last_seq or 0)
            self._journal_stale = read.stale
            self._offset = read.end
        for fd in old_fds:
            if fd >= 0:
                os.close(fd)

    def _drop_torn_tail(self, journal_fd: int, read: _JournalRead, exclusive: bool) -> None:
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
        journal_st = os.stat(self._file(JOURNAL_NAME))
        snap_st = os.stat(self._file(SNAPSHOT_NAME))
        if (
            _file_id(journal_st) != self._journal_id
            or _file_id(snap_st) != self._snapshot_id
            or journal_st.st_size < self._offset
        ):
            self._load_all(exclusive=exclusive)  # compacted by another process
            return
        if journal_st.st_size == self._offset:
            return
        data = _read_range(self._journal_fd, self._offset, journal_st.st_size)
        read = _parse_journal(
            data, self._offset, self._journal_last_seq, self._snap_seq, self._file(JOURNAL_NAME)
        )
        if read.torn_bytes:
            self._drop_torn_tail(self._journal_fd, read, exclusive)
        with self._state_lock:
            self._committed.publish(read.changes)
            self._journal_last_seq = read.last_seq
            self._seq = max(self._snap_seq, read.last_seq or 0)
            self._journal_stale = self._journal_stale or read.stale
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

    def _replace_file(self, name: str, write: Callable[[int], None]) -> int:
        """Write ``name`` whole or not at all: temp file, fsync, os.replace, fsync the directory."""
        tmp = self._file(f"{name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            write(fd)
            if self._sync:
                os.fsync(fd)
            size = os.fstat(fd).st_size
            os.close(fd)
            fd = -1
            os.replace(tmp, self._file(name))
        except BaseException:
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._fsync_dir(self.path)
        return size

    # -- compaction ----------------------------------------------------------------------------
    def _maybe_compact(self) -> None:
        threshold = max(self._compact_min_bytes, self._snapshot_size)
        if self._offset <= threshold or self._offset < self._compact_retry_at:
            return
        try:
            self._compact()
        except (OSError, errors.EngineError) as exc:
            # The batch is durable already; compaction is housekeeping and may wait. Retrying
            # after every commit would make each write cost a snapshot while the disk is full.
            self._compact_retry_at = self._offset + threshold
            log.warning("%s: compaction failed, will retry later: %s", self.path, exc)

    def _compact(self) -> None:
        """Snapshot the committed records, then empty the journal; holds LOCK_EX, caught up."""
        committed, seq = self._committed, self._seq
        size = self._replace_file(SNAPSHOT_NAME, lambda fd: _write_snapshot(fd, committed, seq))
        # From here on a crash leaves the old journal, whose entries the snapshot covers.
        snap_fd = os.open(self._file(SNAPSHOT_NAME), os.O_RDONLY | os.O_CLOEXEC)
        with self._state_lock:
            old_fd, self._snapshot_fd = self._snapshot_fd, snap_fd
            self._snapshot_id = _file_id(os.fstat(snap_fd))
            self._snapshot_size = size
            self._snap_seq = seq
            self._journal_stale = True
        os.close(old_fd)
        self._compactions += 1
        self._reset_journal()

    def _reset_journal(self) -> None:
        """Replace a journal whose every entry the snapshot covers by an empty one."""
        self._replace_file(JOURNAL_NAME, lambda fd: None)
        journal_fd = os.open(self._file(JOURNAL_NAME), os.O_RDWR | os.O_CLOEXEC)
        with self._state_lock:
            old_fd, self._journal_fd = self._journal_fd, journal_fd
            self._journal_id = _file_id(os.fstat(journal_fd))
            self._offset = 0
            self._journal_last_seq = None
            self._journal_stale = False
        os.close(old_fd)

    def _try_reset_journal(self) -> None:
        # Only a journal with no live entry may go; one with live entries waits for compaction.
        if not (self._journal_stale and self._seq == self._snap_seq):
            return
        try:
            self._reset_journal()
        except OSError as exc:
            log.warning("%s: could not reset the journal, will retry: %s", self.path, exc)

    def compact(self) -> None:
        """Snapshot the store and empty its journal now (it also happens as the journal grows)."""
        self._check_writable()
        if getattr(self._local, "writing", False):
            raise errors.EngineError("compact() inside a write transaction of the same thread")
        with self._writer_mutex:
            self._check_writable()
            batch, self._batch = self._batch, None
            if batch is not None:  # a burst's batch is open: flush it for its members first
                if batch.tickets:
                    self._flush(batch)
                else:
                    self._batch_abort(batch.handle)
            handle = self._batch_open()
            try:
                self._compact()
            except OSError as exc:
                raise _write_failure(exc, f"compacting {self.path}")
            finally:
                self._batch_abort(handle)

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
            return _file_id(st) != self._journal_id or st.st_size != self._offset

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
        finally:
            with self._writer_mutex:
                self._close_fds()

    def _close_fds(self) -> None:
        for name in ("_journal_fd", "_snapshot_fd", "_lock_fd"):
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
            self._try_reset_journal()
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
            line = _journal_line(seq, handle.pending)
            try:
                _pwrite_all(self._journal_fd, line, handle.start)
                if self._sync:
                    os.fsync(self._journal_fd)
            except OSError as exc:
                self._forget_append(handle.start)
                raise _write_failure(exc, f"appending to {self._file(JOURNAL_NAME)}") from exc
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
