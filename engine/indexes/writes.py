"""``transact``: the one retryable write of the index layer (every domain write goes through it),
and the attempt it runs, which lets the layer keep what a committed transaction reserved.

On a store whose write transactions run in parallel (``Transaction.parallel_writes``:
postgresql), of two transactions that read and write the same keys one fails with
``WriteConflictError``; ``transact`` runs the function again in a new transaction, up to
``attempts`` times, sleeping a jittered, growing delay in between so that the losers do not
collide again in step, and the retries of one process take turns (a lane per store handle) while
fresh writes of that process wait for the lane to be free, so that on a hot key a loser is not
starved by fresh writes. On the other backends writers take turns
and the loop runs once.

The function may run several times, so it must have no effect outside its transaction: no network
call, no wake-up of a worker, no change of shared state. What the index layer itself keeps beyond
a transaction (the block of ids a sequence reserved) is handed over only once the transaction
committed, through :meth:`WriteAttempt.after_commit`.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import TypeVar

from engine import errors
from engine.indexes.conflicts import IndexConflict
from engine.interface import Store, Transaction

T = TypeVar("T")

#: Attempts before ``transact`` gives up with WriteConflictError (503 WRITE_CONFLICT over HTTP).
#: Generous: writers of other processes do not take turns with ours, and with two of them on one
#: hot key each attempt is about a coin toss (12 attempts ran out in a two-process test).
ATTEMPTS = 30
#: The first retry waits about this long (times 0.5..1.5); each further one twice as long, capped
#: (low: a retrying write holds its process's retry lane while it waits). Worst case before
#: giving up: about 2.5 s of waits plus the attempts themselves.
FIRST_BACKOFF_S = 0.001
MAX_BACKOFF_S = 0.1


class WriteAttempt:
    """One run of ``fn`` in one write transaction of ``store``."""

    __slots__ = ("store", "txn", "reserved", "_on_commit", "_on_rollback")

    def __init__(self, store: Store, txn: Transaction) -> None:
        self.store = store
        self.txn = txn
        #: What the index layer reserved in this transaction and not handed out yet (id blocks,
        #: by sequence key: [next, last]).
        self.reserved: dict[bytes, list[int]] = {}
        self._on_commit: list[Callable[[], None]] = []
        self._on_rollback: list[Callable[[], None]] = []

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the transaction committed (never if it did not, or may not have)."""
        self._on_commit.append(fn)

    def after_rollback(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` if the transaction certainly did not commit."""
        self._on_rollback.append(fn)

    def _run(self, callbacks: list[Callable[[], None]]) -> None:
        for fn in callbacks:
            fn()


_local = threading.local()


def current_attempt(txn: Transaction) -> WriteAttempt | None:
    """The attempt of ``transact`` that runs in ``txn`` in this thread (None: ``txn`` was begun
    directly, by a tool or a test; the index layer then writes the plain way)."""
    attempt: WriteAttempt | None = getattr(_local, "attempt", None)
    return attempt if attempt is not None and attempt.txn is txn else None


def transact(
    store: Store,
    fn: Callable[[Transaction], T],
    *,
    attempts: int = ATTEMPTS,
    backoff: float = FIRST_BACKOFF_S,
    max_backoff: float = MAX_BACKOFF_S,
) -> T:
    """Run ``fn(txn)`` in a write transaction and commit; again if a concurrent writer made it
    fail (``WriteConflictError``), at most ``attempts`` times in all.

    An :class:`IndexConflict` (a unique value taken: an answer about the data) propagates at once,
    as does every other error. When the attempts run out the last WriteConflictError propagates,
    its message saying so; nothing of any attempt was applied.
    """
    lane: threading.Lock | None = None
    waiting = _lanes.get(store)
    if waiting is not None and waiting.locked():
        # Another write of this process is being retried: let it finish first, or fresh writes
        # would keep beating it on a hot key (a retry is rare where keys are disjoint).
        with waiting:
            pass
    try:
        for attempt_no in range(1, attempts + 1):
            in_fn = True
            attempt: WriteAttempt | None = None
            try:
                with store.begin(write=True) as txn:
                    attempt = WriteAttempt(store, txn)
                    _local.attempt = attempt
                    try:
                        result = fn(txn)
                    finally:
                        _local.attempt = None
                    in_fn = False
            except BaseException as exc:
                # Rolled back for sure when fn raised (the transaction was aborted) or the
                # backend refused the commit for a conflict; a commit cut off otherwise may have
                # landed.
                if attempt is not None and (in_fn or isinstance(exc, errors.ConflictError)):
                    attempt._run(attempt._on_rollback)
                if isinstance(exc, IndexConflict) or not isinstance(exc, errors.ConflictError):
                    raise
                if attempt_no == attempts:
                    raise errors.WriteConflictError(
                        f"gave up after {attempts} attempts, each failed by a concurrent write: "
                        f"{exc}"
                    ) from exc
                if lane is None:
                    # Retries of one process take turns, and its fresh writes wait for them (at
                    # the top): on a hot key the losers would otherwise keep losing to fresh
                    # attempts, back off ever longer and starve. The lane is taken between
                    # transactions, never inside one, so it cannot deadlock with row locks.
                    lane = _lane_of(store)
                    lane.acquire()
                delay = min(max_backoff, backoff * (2 ** (attempt_no - 1)))
                time.sleep(delay * (0.5 + random.random()))
                continue
            assert attempt is not None
            attempt._run(attempt._on_commit)
            return result
        raise AssertionError("unreachable")
    finally:
        if lane is not None:
            lane.release()


_lanes: weakref.WeakKeyDictionary[Store, threading.Lock] = weakref.WeakKeyDictionary()
_lanes_lock = threading.Lock()


def _lane_of(store: Store) -> threading.Lock:
    with _lanes_lock:
        lane = _lanes.get(store)
        if lane is None:
            lane = _lanes[store] = threading.Lock()
        return lane
