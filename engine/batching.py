"""Group commit: :class:`BatchingStore`, the write path the embedded backends (lmdb, file, sqlite)
share.

A write transaction buffers its changes in a :class:`WriteSet`, reading through it to the
backend's open *batch*; committing applies the changes to the batch, and the last writer of a
burst flushes the batch durably once for everyone in it. Each caller is still atomic (its changes
are applied whole or not at all) and is acknowledged only after the flush that carries its
changes succeeded.
"""

from __future__ import annotations

import threading
import time
from _thread import allocate_lock as _allocate_lock
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

from engine import errors
from engine.interface import Store, Transaction, check_key, check_value, limited

#: Group commit gathers at most this many write transactions into one flush, so that a steady
#: stream of writers cannot postpone everyone's acknowledgement without bound.
MAX_BATCH_MEMBERS = 512
#: Pipelined group commit: how many batches in a row one thread flushes before it hands the next
#: one over to one of its members.
FLUSHES_PER_THREAD = 4

_MISSING = object()


class WriteSet:
    """The changes of one write transaction, not yet applied: key -> value, or None for deleted."""

    __slots__ = ("changes",)

    def __init__(self) -> None:
        self.changes: dict[bytes, bytes | None] = {}

    def overlay_scan(
        self,
        base: Iterator[tuple[bytes, bytes]],
        lo: bytes,
        hi: bytes | None,
        reverse: bool,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Merge the changes inside [lo, hi) into ``base``, an ordered scan of the same range."""
        mine = sorted(
            (k for k in self.changes if k >= lo and (hi is None or k < hi)), reverse=reverse
        )
        if not mine:
            yield from base
            return
        i = 0
        for key, value in base:
            # Emit our own keys that sort before this base key (after it, in a reverse scan).
            while i < len(mine) and (mine[i] > key if reverse else mine[i] < key):
                v = self.changes[mine[i]]
                if v is not None:
                    yield mine[i], v
                i += 1
            if i < len(mine) and mine[i] == key:
                v = self.changes[key]
                i += 1
                if v is not None:
                    yield key, v
                continue
            yield key, value
        for k in mine[i:]:
            v = self.changes[k]
            if v is not None:
                yield k, v


class RecoverableBatchError(Exception):
    """Raised by a backend hook when the batch failed for a reason the backend can cure.

    The batch is aborted, ``_batch_recover`` is called (the lmdb backend grows its map here), and
    every member's changes are applied again to a fresh batch. Never escapes the engine.
    """


class _Ticket:
    """One committed write transaction waiting for the flush that makes it durable.

    ``waiting`` is held from creation until the flush that carries the changes has ended (its
    outcome in ``error``): the member waits by acquiring it, the flusher releases it. A bare lock
    is the cheapest wake-up there is, and every write makes one.
    """

    __slots__ = ("writes", "error", "waiting", "lead")

    def __init__(self, writes: dict[bytes, bytes | None]) -> None:
        self.writes = writes
        self.error: BaseException | None = None
        self.waiting = _allocate_lock()
        self.waiting.acquire()
        #: Set when the member is woken not because its batch is durable but to flush it.
        self.lead = False

    def wait(self) -> None:
        self.waiting.acquire()

    def finish(self, error: BaseException | None) -> None:
        self.error = error
        self.waiting.release()


class _Batch:
    """The write transactions that one flush makes durable.

    ``after`` is the batch that was being flushed when this one opened: with a pipelined backend
    this batch read through that one's changes, so it may be flushed only after it, and must fail
    if it failed. ``_unflushed`` is held until this batch's flush has ended (``error`` says how):
    a bare lock, not an Event, because with one writer there is a batch per write.
    """

    __slots__ = ("handle", "tickets", "after", "_unflushed", "error")

    def __init__(self, after: _Batch | None) -> None:
        self.handle: Any = None
        self.tickets: list[_Ticket] = []
        self.after = after
        self._unflushed = _allocate_lock()
        self._unflushed.acquire()
        self.error: BaseException | None = None

    def flushed(self) -> bool:
        return not self._unflushed.locked()

    def wait_flushed(self) -> None:
        self._unflushed.acquire()
        self._unflushed.release()

    def set_flushed(self) -> None:
        self._unflushed.release()


class BatchedWriteTransaction(Transaction):
    """A write transaction of a :class:`BatchingStore` (holds the store's writer mutex)."""

    write = True

    def __init__(self, store: BatchingStore, batch: _Batch) -> None:
        self._store = store
        self._batch = batch
        self._ws = WriteSet()

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        key = check_key(key)
        v = self._ws.changes.get(key, _MISSING)
        if v is not _MISSING:
            return v  # type: ignore[return-value]
        return self._store._batch_get(self._batch.handle, key)

    def put(self, key: bytes, value: bytes, *, overwrite: bool = True) -> bool:
        self._check_open()
        key = check_key(key)
        value = check_value(value)
        if not overwrite and self.get(key) is not None:
            return False
        self._ws.changes[key] = value
        return True

    def delete(self, key: bytes) -> bool:
        self._check_open()
        key = check_key(key)
        existed = self.get(key) is not None
        if existed:
            self._ws.changes[key] = None
        return existed

    def _scan(
        self, lo: bytes, hi: bytes | None, reverse: bool, limit: int | None
    ) -> Iterator[tuple[bytes, bytes]]:
        base = self._store._batch_scan(self._batch.handle, lo, hi, reverse)
        return limited(self._ws.overlay_scan(base, lo, hi, reverse), limit)

    def commit(self) -> None:
        self._check_open()
        self._closed = True
        self._store._finish(self._batch, self._ws.changes)

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._store._finish(self._batch, None)


class BatchingStore(Store):
    """Group commit for backends that pay per durable flush.

    Writers take the writer mutex in turn (one writer at a time, as in LMDB and SQLite). A writer
    that commits applies its changes to the open batch; if nobody is queued behind it, it flushes
    the batch durably and wakes the writers whose changes the flush carried, otherwise it leaves
    the flush to whoever comes last. While a flush runs, new writers queue up, so the next flush
    carries all of them: the batch grows with the load, with no timer and no idle wait.

    Pipelined backends (``pipelined = True``) flush outside the writer mutex: the writer that
    closes a batch seals it, releases the mutex and then flushes, so the next batch's writers run
    their transactions during the flush instead of queueing behind it. They read through the
    sealed batch's changes (:meth:`_batch_open_after`); their batch is flushed only after it, and
    fails if it failed, since its members may have read what never became durable. At most one
    batch is in flight: while a flush runs, the next batch stays open (whoever would close it
    leaves it to the flush, and waits for its own acknowledgement like every member), and the
    flushing thread, once done, seals it and wakes one of its members to flush it. No writer
    waits for a flush while it holds the writer mutex (only close(), and a batch grown to
    MAX_BATCH_MEMBERS, do).

    Backends implement the ``_batch_*`` hooks; they run only under the writer mutex, except
    ``_batch_commit`` and ``_batch_abort`` of a sealed batch in a pipelined backend, which run in
    the flushing thread, one batch at a time.
    """

    #: Artificial delay before each flush, for benchmarks that model slow flash (0 in production).
    flush_delay: float = 0.0
    #: Flush outside the writer mutex; the backend then implements _batch_open_after.
    pipelined: bool = False

    def __init__(self) -> None:
        self._writer_mutex = threading.Lock()
        # Writers queued for the writer mutex, counted by list appends and pops (atomic, unlike
        # ``+= 1``), so that counting takes no lock of its own.
        self._queued: list[None] = []
        self._batch: _Batch | None = None
        self._inflight: _Batch | None = None
        self._local = threading.local()
        self._closing = False
        #: Observers of group commit (metrics): each is called after every flush, in the
        #: flushing thread, with (write transactions in the batch, seconds, succeeded). They
        #: must be quick; an error one raises is ignored, so an observer can never fail a write.
        self.flush_listeners: list[Callable[[int, float, bool], None]] = []

    # -- hooks -------------------------------------------------------------------------------
    @abstractmethod
    def _batch_open(self) -> Any:
        """Start a backend write transaction (the batch) and return its handle."""

    def _batch_open_after(self, sealed: Any) -> Any:
        """Pipelined backends: a batch that also reads through the changes of ``sealed``, the
        handle of a batch whose flush may not have ended yet."""
        raise NotImplementedError

    def _batch_seal(self, handle: Any) -> None:
        """Pipelined backends: the batch takes no more members (release what only reads need)."""

    @abstractmethod
    def _batch_get(self, handle: Any, key: bytes) -> bytes | None: ...

    @abstractmethod
    def _batch_scan(
        self, handle: Any, lo: bytes, hi: bytes | None, reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]: ...

    @abstractmethod
    def _batch_apply(self, handle: Any, writes: dict[bytes, bytes | None]) -> None:
        """Apply one member's changes to the batch (not yet durable)."""

    def _batch_write(self, handle: Any) -> None:
        """Pipelined backends, optionally: write a sealed batch's changes without making them
        durable yet (its _batch_commit then only commits). Called by a thread that will commit
        the batch itself; a failure here is not reported (_batch_commit writes again)."""

    @abstractmethod
    def _batch_commit(self, handle: Any) -> None:
        """Make the batch durable; raise to fail every member of the batch."""

    @abstractmethod
    def _batch_abort(self, handle: Any) -> None: ...

    def _batch_recover(self, exc: RecoverableBatchError) -> None:
        """Cure the cause of a RecoverableBatchError (no transaction of this store is open)."""
        raise errors.EngineError(f"unrecoverable batch failure: {exc}") from exc

    @abstractmethod
    def _check_writable(self) -> None:
        """Raise if the store is closed or read-only."""

    # -- the protocol --------------------------------------------------------------------------
    def _begin_write(self) -> BatchedWriteTransaction:
        self._check_writable()
        if getattr(self._local, "writing", False):
            # The writer mutex is not re-entrant: a second write transaction in the same thread
            # would wait for itself forever.
            raise errors.EngineError("a write transaction is already open in this thread")
        queued = self._queued
        queued.append(None)
        self._writer_mutex.acquire()
        queued.pop()
        try:
            self._check_writable()
            if self._batch is None:
                self._batch = self._new_batch()
        except BaseException:
            self._writer_mutex.release()
            raise
        self._local.writing = True
        return BatchedWriteTransaction(self, self._batch)

    def _new_batch(self) -> _Batch:
        after = self._inflight if self.pipelined else None
        if after is not None and (after.flushed() or after.error is not None):
            # Flushed already: its changes, if it succeeded, are in any state read from now on.
            # Or doomed (it read through a batch that failed): none of its changes will land,
            # so read the durable state, which is what it will be; reading through it would
            # only fail this batch too, and the next, for as long as writers keep coming.
            after = None
        batch = _Batch(after)
        batch.handle = self._open_handle(batch)
        return batch

    def _open_handle(self, batch: _Batch) -> Any:
        if batch.after is not None:
            return self._batch_open_after(batch.after.handle)
        return self._batch_open()

    def _finish(self, batch: _Batch, writes: dict[bytes, bytes | None] | None) -> None:
        """End a write transaction (writes None: aborted); called with the writer mutex held."""
        self._local.writing = False
        ticket: _Ticket | None = None
        try:
            if writes:
                ticket = _Ticket(writes)
                self._apply_member(batch, ticket)
        except BaseException:
            self._leave(batch)
            raise
        self._leave(batch)
        if ticket is not None:
            ticket.wait()
            if ticket.lead:
                self._flush_and_hand_over(batch)
            if ticket.error is not None:
                raise ticket.error

    def _apply_member(self, batch: _Batch, ticket: _Ticket) -> None:
        try:
            self._batch_apply(batch.handle, ticket.writes)
        except RecoverableBatchError as exc:
            self._rebuild(batch, exc, [*batch.tickets, ticket])
        except BaseException:
            # The backend may have half-applied this member: start the batch again with the
            # members before it, then fail this one alone.
            self._rebuild(batch, None, batch.tickets)
            raise
        batch.tickets.append(ticket)

    def _rebuild(
        self, batch: _Batch, exc: RecoverableBatchError | None, tickets: list[_Ticket]
    ) -> None:
        """Abort the batch's backend transaction and apply ``tickets`` again to a fresh one."""
        for _attempt in range(8):
            self._batch_abort(batch.handle)
            if exc is not None:
                self._batch_recover(exc)
            batch.handle = self._open_handle(batch)
            try:
                for t in tickets:
                    self._batch_apply(batch.handle, t.writes)
                return
            except RecoverableBatchError as again:
                exc = again
        raise errors.EngineError("the batch could not be rebuilt after 8 attempts")

    def _leave(self, batch: _Batch) -> None:
        """Flush if nobody is queued behind us (or the batch is full); release the mutex.

        Pipelined: if a flush is still running, the batch stays open (later writers join it)
        and the flusher, once done, seals it and wakes one of its members to flush it. Nobody
        waits for a flush while holding the writer mutex, so writers do not pile up behind it.
        """
        sealed = False
        try:
            if not batch.tickets:
                # Nothing to flush: end the backend transaction rather than keep it (and, for
                # SQLite, the database's write lock) open while no one writes.
                self._discard_batch(batch)
                return
            roomy = len(batch.tickets) < MAX_BATCH_MEMBERS and not self._closing
            if self._queued and roomy:
                return  # a queued writer will flush, carrying our changes with its own
            if self.pipelined:
                if roomy and self._flushing():
                    return  # the running flush hands this batch over when it ends
                self._seal(batch)
                sealed = True
            else:
                self._flush(batch)
        finally:
            self._writer_mutex.release()
        if sealed:
            self._flush_and_hand_over(batch)

    def _flushing(self) -> bool:
        inflight = self._inflight
        return inflight is not None and not inflight.flushed()

    def _flush_and_hand_over(self, batch: _Batch) -> None:
        """Flush a sealed batch, and then the batches that filled up meanwhile, up to
        FLUSHES_PER_THREAD in all; then seal the next one, if any, and wake one of its members
        to flush it (so that no caller waits for more than a few flushes besides its own).

        When it goes on, this thread writes the next batch (``_batch_write``) before it wakes
        the members of the batch it just made durable: while they sleep nobody else wants the
        GIL, which py-lmdb gives up at every put, and once woken they run their next
        transactions during the next batch's fsync."""
        for flushes in range(1, FLUSHES_PER_THREAD + 1):
            self._flush_durably(batch)
            with self._writer_mutex:
                following = self._batch
                if following is None or not following.tickets or self._closing \
                        or self._flushing():
                    following = None  # nothing waits, close() flushes it, or that flush hands over
                else:
                    self._seal(following)
                    if flushes == FLUSHES_PER_THREAD:
                        following.tickets[-1].lead = True
            if following is None:
                self._wake(batch)
                return
            if flushes == FLUSHES_PER_THREAD:
                following.tickets[-1].waiting.release()  # the leader flushes it
                self._wake(batch)
                return
            if following.error is None:
                try:
                    self._batch_write(following.handle)
                except Exception:
                    pass  # _batch_commit writes it again, and reports what still fails
            self._wake(batch)
            batch = following

    def _seal(self, batch: _Batch) -> None:
        """Close ``batch`` to new members and make it the batch in flight (writer mutex held)."""
        self._batch = None
        try:
            self._batch_seal(batch.handle)
        except Exception:
            pass  # only read state is released here; the flush reports real failures
        after = batch.after
        if after is not None:
            # One batch in flight at a time: ours read through that one, so it lands first.
            after.wait_flushed()
            batch.after = None
            if after.error is not None:
                batch.error = after.error
        self._inflight = batch

    def _flush(self, batch: _Batch) -> None:
        self._flush_durably(batch)
        self._wake(batch)

    def _flush_durably(self, batch: _Batch) -> None:
        """Commit the batch (or fail it) and mark it flushed; its members are not woken yet."""
        if self._batch is batch:
            self._batch = None
        error: BaseException | None = batch.error
        if error is not None:
            # An earlier batch that this one read through failed: none of ours may land.
            error = _same_kind(error, "an earlier write this transaction read from failed")
            try:
                self._batch_abort(batch.handle)
            except Exception:
                pass
        started = time.perf_counter()
        if error is None:
            try:
                if self.flush_delay:
                    time.sleep(self.flush_delay)
                for _attempt in range(8):
                    try:
                        self._batch_commit(batch.handle)
                        break
                    except RecoverableBatchError as exc:
                        self._rebuild(batch, exc, batch.tickets)
                else:
                    raise errors.EngineError(
                        "the batch could not be committed after 8 attempts"
                    )
            except BaseException as exc:  # every member learns the outcome, whatever it was
                error = exc
                try:
                    self._batch_abort(batch.handle)
                except Exception:
                    pass
        batch.error = error
        batch.set_flushed()
        if self.flush_listeners:
            elapsed = time.perf_counter() - started
            for listener in self.flush_listeners:
                try:
                    listener(len(batch.tickets), elapsed, error is None)
                except Exception:
                    pass

    @staticmethod
    def _wake(batch: _Batch) -> None:
        """Tell every member of a flushed batch its outcome."""
        error = batch.error
        for t in batch.tickets:
            t.finish(error)

    def _discard_batch(self, batch: _Batch) -> None:
        if self._batch is batch:
            self._batch = None
        try:
            self._batch_abort(batch.handle)
        except Exception:
            pass

    def _drain_writers(self) -> None:
        """Wait for writers in flight and flush what they left; called by close()."""
        self._closing = True
        with self._writer_mutex:
            batch, self._batch = self._batch, None
            if batch is not None:
                if batch.tickets:
                    if self.pipelined:
                        self._seal(batch)
                    self._flush(batch)
                else:
                    self._batch_abort(batch.handle)
            inflight = self._inflight
            if inflight is not None:
                inflight.wait_flushed()


def _same_kind(error: BaseException, why: str) -> BaseException:
    """An error of the same engine class as ``error`` (so callers map it alike), saying why."""
    kind = type(error) if isinstance(error, errors.EngineError) else errors.EngineError
    try:
        new = kind(f"{why}: {error}")
    except Exception:
        new = errors.EngineError(f"{why}: {error}")
    new.__cause__ = error
    return new
