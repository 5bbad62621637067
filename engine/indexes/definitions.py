"""Index definitions (unique, ordered, roll-up), sequences, and the helpers that turn an
extractor's answer into key elements and counters."""

from __future__ import annotations

import heapq
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.indexes.layout import NS_SEQUENCE
from engine.indexes.writes import current_attempt
from engine.interface import Store, Transaction
from engine.keys import END, pack, unpack


def to_micros(amount: float) -> int:
    """A float amount (a cost) as integer micro-units, so that counters add up exactly."""
    return round(amount * 1_000_000)


def from_micros(units: int) -> float:
    return units / 1_000_000


def as_tuple(value: Any) -> tuple[Any, ...] | None:
    if value is None:
        return None
    if isinstance(value, tuple):
        return value
    return (value,)


def entries_of(value: Any) -> list[tuple[Any, ...]]:
    """An ordered-index extractor's answer as a list of tuples (None: none; a list: several)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [t for t in (as_tuple(v) for v in value) if t is not None]
    return [as_tuple(value)]  # type: ignore[list-item]


def pack_counters(counters: Mapping[str, int]) -> bytes:
    flat: list[Any] = []
    for name in sorted(counters):
        flat += (name, counters[name])
    return pack(flat)


def unpack_counters(raw: bytes) -> dict[str, int]:
    flat = unpack(raw)
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}  # type: ignore[misc]


def add_counters(into: dict[str, int], delta: Mapping[str, int], sign: int = 1) -> None:
    for name, n in delta.items():
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"roll-up counter {name!r} must be an int, not {type(n).__name__}")
        into[name] = into.get(name, 0) + sign * n


def key_bound(prefix: bytes, values: Any, *, inclusive_end: bool = False) -> bytes:
    key = prefix + pack(as_tuple(values) or ())
    return key + END if inclusive_end else key


# -- index definitions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class UniqueIndex:
    """value -> record id. ``extract(record)`` gives a scalar or a tuple; None: not indexed."""

    name: str
    extract: Callable[[Any], Any]


@dataclass(frozen=True)
class OrderedIndex:
    """(values..., id) -> record. ``extract(record)`` gives a scalar, a tuple, a list of tuples
    (one entry each) or None (not indexed). Long str/bytes elements are clipped (keys.clip)."""

    name: str
    extract: Callable[[Any], Any]


@dataclass(frozen=True)
class Rollup:
    """Counters per bucket. ``extract(record)`` gives ``(bucket_tuple, {counter: int})``, a list
    of such pairs, or None; the counters are added on insert and subtracted on delete."""

    name: str
    extract: Callable[[Any], Any]


#: Ids a sequence reserves at once where writers run in parallel: one write of the sequence key
#: per this many creates instead of one per create.
ID_BLOCK = 64


class _IdBlock:
    """The ids one store handle reserved from a sequence and has not handed out yet."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.free: list[int] = []  # a heap: the lowest id goes first, so ids follow creation
        self.reserved_upto = 0  # the sequence key is at least this (a committed reservation)

    def take(self) -> int | None:
        with self.lock:
            return heapq.heappop(self.free) if self.free else None

    def give_back(self, n: int) -> None:
        with self.lock:
            heapq.heappush(self.free, n)

    def add(self, first: int, last: int) -> None:
        """Hand over ``first..last`` (none when ``first > last``), reserved up to ``last``."""
        with self.lock:
            for n in range(first, last + 1):
                heapq.heappush(self.free, n)
            self.reserved_upto = max(self.reserved_upto, last)


class SequenceCounter:
    """A monotonic counter in the store: ids are never reused, even after deletes or restarts.

    The key holds the highest id given out or reserved. Where writers run in parallel
    (postgresql), a write run by ``transact`` reserves ``block`` ids at once and the store handle
    hands the rest out to its later writes, so concurrent creates do not all read and write this
    one key. Ids then stay unique and are never reused, and within one store handle they follow
    the order of creation; across processes they interleave by block, and the ids left in a block
    when its process stops are skipped (a restart may skip up to ``block - 1`` ids). An id taken
    by a write that rolled back goes back to the block. Elsewhere (or in a transaction begun
    directly) each id is one increment of the key, as it always was.
    """

    def __init__(self, name: str, block: int = ID_BLOCK) -> None:
        self.name = name
        self.key = pack((NS_SEQUENCE, name))
        self.block = block
        self._blocks: weakref.WeakKeyDictionary[Store, _IdBlock] = weakref.WeakKeyDictionary()
        self._blocks_lock = threading.Lock()

    def _block_of(self, store: Store) -> _IdBlock:
        with self._blocks_lock:
            block = self._blocks.get(store)
            if block is None:
                block = self._blocks[store] = _IdBlock()
            return block

    def current(self, txn: Transaction) -> int:
        raw = txn.get(self.key)
        return 0 if raw is None else unpack(raw)[0]  # type: ignore[return-value]

    def next(self, txn: Transaction) -> int:
        attempt = current_attempt(txn) if txn.parallel_writes and self.block > 1 else None
        if attempt is None:
            n = self.current(txn) + 1
            txn.put(self.key, pack((n,)))
            return n
        pending = attempt.reserved.get(self.key)
        if pending is not None and pending[0] <= pending[1]:
            pending[0] += 1  # a block this transaction reserved: ids in order, no other writer
            return pending[0] - 1
        block = self._block_of(attempt.store)
        taken = block.take()
        if taken is not None:
            attempt.after_rollback(lambda: block.give_back(taken))
            return taken
        # Reserve a block in this transaction; what it leaves is this handle's once it committed
        # (a reservation that rolled back reserved nothing, and another writer may take them).
        first = self.current(txn) + 1
        last = first + self.block - 1
        txn.put(self.key, pack((last,)))
        pending = attempt.reserved[self.key] = [first + 1, last]
        attempt.after_commit(lambda: block.add(pending[0], last))
        return first

    def next_id(self, txn: Transaction) -> str:
        return str(self.next(txn))

    def advance_to(self, txn: Transaction, n: int) -> None:
        """Make sure the next value is above ``n`` (a record loaded with an explicit id)."""
        attempt = current_attempt(txn) if txn.parallel_writes else None
        if attempt is not None:
            block = self._blocks.get(attempt.store)
            if block is not None and n <= block.reserved_upto:
                return  # an id of our own block: the key is past it already, leave it unread
        if n > self.current(txn):
            txn.put(self.key, pack((n,)))
