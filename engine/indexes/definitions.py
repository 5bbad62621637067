"""Index definitions (unique, ordered, roll-up), sequences, and the helpers that turn an
extractor's answer into key elements and counters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.indexes.layout import NS_SEQUENCE
from engine.interface import Transaction
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


class SequenceCounter:
    """A monotonic counter in the store: ids are never reused, even after deletes or restarts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.key = pack((NS_SEQUENCE, name))

    def current(self, txn: Transaction) -> int:
        raw = txn.get(self.key)
        return 0 if raw is None else unpack(raw)[0]  # type: ignore[return-value]

    def next(self, txn: Transaction) -> int:
        n = self.current(txn) + 1
        txn.put(self.key, pack((n,)))
        return n

    def next_id(self, txn: Transaction) -> str:
        return str(self.next(txn))

    def advance_to(self, txn: Transaction, n: int) -> None:
        """Make sure the next value is above ``n`` (a record loaded with an explicit id)."""
        if n > self.current(txn):
            txn.put(self.key, pack((n,)))
