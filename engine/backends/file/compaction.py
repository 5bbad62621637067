"""The file backend's compaction, off the write path, and the upgrade of a version-1 store (see
:mod:`engine.backends.file` for the design): a mixin of :class:`~.store.FileStore`, which owns
the files, the locks and the state these methods use."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from engine import errors
from engine.backends.file.format import (
    JOURNAL_NAME,
    SNAPSHOT_NAME,
    VERSION,
    frozen_name,
    snapshot_seq,
    write_snapshot,
)
from engine.backends.file.osio import file_id, unlink_quietly, write_failure
from engine.interface import Transaction

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("engine.backends.file.store")


def _crash_point(step: str) -> None:
    """A named step of a compaction or an upgrade: the tests stop the process here."""


#: A snapshot written in the background gives up the GIL after this many pairs (a few hundred
#: microseconds of work), so that request threads never wait for it for a whole switch interval.
_YIELD_EVERY = 64


def _yielding(pairs: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    for i, pair in enumerate(pairs, 1):
        yield pair
        if not i % _YIELD_EVERY:
            time.sleep(0)  # releases the GIL to whichever thread waits for it


class Compaction:
    """Compaction and upgrade, for :class:`~.store.FileStore` (whose attributes they use)."""

    if TYPE_CHECKING:
        # FileStore's state that these methods use (declared there; typed here for mypy).
        _offset: int
        _journal_fd: int
        _compact_retry_at: float
        _compactions: int
        _compactor: threading.Thread | None
        _batch: Any

        def __getattr__(self, name: str) -> Any: ...

    def _upgrade(self) -> None:
        """Rewrite a version-1 store in version 2, in place; LOCK_EX held, everything loaded.

        Each step replaces one file whole (temp file, fsync, rename, fsync of the directory),
        and the reader takes either version of each file, so a crash between two steps leaves a
        store that opens (and that the next writer upgrades again): first the snapshot, covering
        every entry (the old journal's entries become stale and are skipped), then an empty
        journal, and last meta.json, which says the upgrade is done."""
        committed, seq = self._committed, self._seq
        log.warning("%s: upgrading the file store to format version %d", self.path, VERSION)
        pairs = ((key, committed.values[key]) for key in committed.keys)
        size = self._replace_file(SNAPSHOT_NAME, lambda fd: write_snapshot(fd, pairs, seq))
        with self._state_lock:
            self._snapshot_size, self._snap_seq = size, seq
        _crash_point("upgrade: snapshot written")
        self._replace_file(JOURNAL_NAME, lambda fd: None)
        self._reopen_journal()
        _crash_point("upgrade: journal emptied")
        self._write_meta({**self._meta, "format_version": VERSION})
        self._meta["format_version"] = VERSION

    def _maybe_compact(self) -> None:
        """After a commit (writer mutex and LOCK_EX held): start a compaction if the journal
        outgrew the snapshot, unless one runs."""
        pending = self._offset + self._frozen_bytes
        threshold = max(self._compact_min_bytes, self._snapshot_size)
        if pending <= threshold or pending < self._compact_retry_at:
            return
        if not self._compaction_lock.acquire(blocking=False):
            return  # one runs; it covers what was written before it started
        try:
            txn, seq = self._start_segment()
            thread = threading.Thread(
                target=self._compact_in_background, args=(txn, seq), daemon=True,
                name=f"file-store-compaction {self.path}",
            )
            self._compactor = thread
            thread.start()
        except BaseException as exc:
            self._compaction_lock.release()
            if not isinstance(exc, (OSError, errors.EngineError)):
                raise
            # The batch is durable already; compaction is housekeeping and may wait.
            self._compact_retry_at = pending + threshold
            log.warning("%s: cannot start a compaction, will retry later: %s", self.path, exc)

    def _start_segment(self) -> tuple[Transaction, int]:
        """Close the journal as a segment and start an empty one (unless it is empty), and pin
        the state the snapshot will hold: everything up to the last entry. Writer mutex and
        LOCK_EX held, caught up.

        The old journal keeps its entries under its new name until a snapshot covers them;
        between the rename and the new journal's creation the journal is missing, which a reader
        takes as empty."""
        seq = self._seq
        if self._offset > 0:
            os.replace(self._file(JOURNAL_NAME), self._file(frozen_name(seq)))
            _crash_point("switch: journal renamed")
            journal_fd = self._create_journal()  # and the directory fsync'ed: the rename too
            _crash_point("switch: new journal created")
            with self._state_lock:
                old_fd, self._journal_fd = self._journal_fd, journal_fd
                self._journal_id = file_id(os.fstat(journal_fd))
                self._frozen_bytes += self._offset
                self._offset = 0
            os.close(old_fd)
        return self._pinned_reader(), seq

    def _compact_in_background(self, txn: Transaction, seq: int) -> None:
        try:
            self._write_snapshot_of(txn, seq)
        except Exception as exc:
            if not self._closed:
                pending = self._offset + self._frozen_bytes
                self._compact_retry_at = pending + max(
                    self._compact_min_bytes, self._snapshot_size
                )
                log.warning("%s: compaction failed, will retry later: %s", self.path, exc)
        finally:
            txn.abort()
            self._compactor = None
            self._compaction_lock.release()

    def _write_snapshot_of(self, txn: Transaction, seq: int) -> None:
        """Write the snapshot of ``txn`` (the state at entry ``seq``) while writers go on, then
        put it in place and remove the journal segments it covers."""
        def write(fd: int) -> None:
            # Written back a MiB at a time: a journal fsync meanwhile (ext4 commits the data of
            # every file with its own) then never waits for the whole snapshot to reach the disk.
            after_chunk = (lambda: os.fdatasync(fd)) if self._sync else None
            write_snapshot(fd, _yielding(txn.scan(b"")), seq, after_chunk)

        tmp, size = self._write_temp(SNAPSHOT_NAME, write)
        _crash_point("compaction: snapshot written")
        try:
            with self._writer_mutex:
                if self._closed:
                    raise errors.StoreClosedError("the store was closed")
                # LOCK_EX, so that no reader in another process loads between the rename and
                # the removal of the segments, and no compaction there installs at the same time.
                own_lock = not self._ex_held
                if own_lock:
                    self._flock(fcntl.LOCK_EX)
                try:
                    self._install_snapshot(tmp, size, seq)
                finally:
                    if own_lock:
                        self._funlock()
        finally:
            unlink_quietly(tmp)  # gone already, unless the snapshot was not installed

    def _install_snapshot(self, tmp: str, size: int, seq: int) -> None:
        with open(self._file(SNAPSHOT_NAME), "rb") as f:
            current = snapshot_seq(f.readline())
        if current is not None and current >= seq:
            return  # another process installed one at least as recent
        os.replace(tmp, self._file(SNAPSHOT_NAME))
        _crash_point("compaction: snapshot renamed")
        self._fsync_dir(self.path)  # the snapshot's name durable before the segments go
        _crash_point("compaction: snapshot durable")
        self._prune_frozen(seq)
        _crash_point("compaction: segments removed")
        with self._state_lock:
            self._snapshot_size = size
            self._snap_seq = seq
            self._frozen_bytes = sum(
                os.path.getsize(self._file(name)) for _s, name in self._frozen_segments()
            )
            self._compactions += 1

    def _prune_frozen(self, seq: int) -> None:
        """Remove the journal segments that the snapshot at ``seq`` covers (LOCK_EX held)."""
        for seg_seq, name in self._frozen_segments():
            if seg_seq <= seq:
                unlink_quietly(self._file(name))

    def compact(self) -> None:
        """Snapshot the store now and start an empty journal (it also happens as the journal
        grows, in the background); returns once the snapshot is in place."""
        self._check_writable()
        if getattr(self._local, "writing", False):
            raise errors.EngineError("compact() inside a write transaction of the same thread")
        self._compaction_lock.acquire()  # waits for a compaction running in the background
        try:
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
                    txn, seq = self._start_segment()
                except OSError as exc:
                    raise write_failure(exc, f"compacting {self.path}")
                finally:
                    self._batch_abort(handle)
            try:
                self._write_snapshot_of(txn, seq)
            except OSError as exc:
                raise write_failure(exc, f"compacting {self.path}")
            finally:
                txn.abort()
        finally:
            self._compaction_lock.release()

    def wait_for_compaction(self) -> None:
        """Return once no compaction runs (for tests and tools that look at the files)."""
        with self._compaction_lock:
            pass
