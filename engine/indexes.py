"""Indexes built from the engine interface alone, written in the same transaction as the record.

Nothing here knows a backend or a domain. Every read-modify-write below (sequences, roll-ups,
unique buckets, TTL refresh) relies on one property of the engine: a write transaction sees a
consistent state and no other writer commits a change to the keys it read before it commits
(lmdb, file and sqlite run one writer at a time; postgresql takes an advisory lock per write
transaction). Insert-if-absent (``put(..., overwrite=False)``) is what arbitrates every claim.

Key layout (every key is a tuple packed by :mod:`engine.keys`; ``id`` is the id element, an int
for decimal ids)::

    ("c", coll, "r", id)                       -> record bytes, as given by the caller
    ("c", coll, "u", index, *values)           -> pack((id,))             unique claim
    ("c", coll, "uh", index, sha256(values))   -> pack((id, values, ...)) bucket of long claims
    ("c", coll, "o", index, *values, id)       -> b""                     ordered entry
    ("c", coll, "s", rollup, *bucket)          -> pack((field, n, ...))   roll-up counters
    ("q", sequence)                            -> pack((last,))           sequence counter
    ("t", space, "k", key) | ("t", space, "h", sha256(key))  -> pack((expires_us, key))
    ("t", space, "x", expires_us, "k"|"h", key|digest)       -> b""       expiry index

A collection's sequence is named after the collection. Counters and expiry times are ints
(microseconds for times), so totals are exact; see :func:`to_micros` for float amounts.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine import errors
from engine.base import MAX_KEY_SIZE, Store, Transaction
from engine.keys import END, clip, id_element, id_string, pack, unpack

log = logging.getLogger(__name__)

T = TypeVar("T")

NS_COLLECTION = "c"
NS_SEQUENCE = "q"
NS_TTL = "t"


# -- errors --------------------------------------------------------------------------------------
class IndexConflict(errors.ConflictError):
    """A conflict decided by the data (not by a concurrent writer): retrying cannot help."""


class UniqueViolation(IndexConflict):
    """A unique index already maps ``value`` to another record (``holder``)."""

    def __init__(self, collection: str, index: str, value: tuple[Any, ...], holder: str | None):
        self.collection = collection
        self.index = index
        self.value = value[0] if len(value) == 1 else value
        self.holder = holder
        super().__init__(
            f"{collection}.{index}: {self.value!r} is already taken"
            + (f" by record {holder}" if holder is not None else "")
        )


class DuplicateRecord(IndexConflict):
    """insert() of an id that already exists."""

    def __init__(self, collection: str, record_id: str):
        self.collection = collection
        self.record_id = record_id
        super().__init__(f"{collection}: record {record_id} already exists")


class RecordNotFound(errors.EngineError, LookupError):
    """update() of an id that does not exist."""

    def __init__(self, collection: str, record_id: str):
        self.collection = collection
        self.record_id = record_id
        super().__init__(f"{collection}: no record {record_id}")


# -- helpers ------------------------------------------------------------------------------------
def transact(
    store: Store, fn: Callable[[Transaction], T], *, attempts: int = 8, backoff: float = 0.01
) -> T:
    """Run ``fn(txn)`` in a write transaction, again if a concurrent writer made it fail.

    Only a backend ConflictError (a serialization failure or deadlock) is retried; an
    :class:`IndexConflict` is an answer about the data and propagates at once. ``fn`` may run
    more than once, so it should have no effects outside the transaction.
    """
    for attempt in range(attempts):
        try:
            with store.begin(write=True) as txn:
                return fn(txn)
        except IndexConflict:
            raise
        except errors.ConflictError:
            if attempt == attempts - 1:
                raise
            time.sleep(backoff * (2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def to_micros(amount: float) -> int:
    """A float amount (a cost) as integer micro-units, so that counters add up exactly."""
    return round(amount * 1_000_000)


def from_micros(units: int) -> float:
    return units / 1_000_000


def _as_tuple(value: Any) -> tuple[Any, ...] | None:
    if value is None:
        return None
    if isinstance(value, tuple):
        return value
    return (value,)


def _entries(value: Any) -> list[tuple[Any, ...]]:
    """An ordered-index extractor's answer as a list of tuples (None: none; a list: several)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [t for t in (_as_tuple(v) for v in value) if t is not None]
    return [_as_tuple(value)]  # type: ignore[list-item]


def _pack_counters(counters: Mapping[str, int]) -> bytes:
    flat: list[Any] = []
    for name in sorted(counters):
        flat += (name, counters[name])
    return pack(flat)


def _unpack_counters(raw: bytes) -> dict[str, int]:
    flat = unpack(raw)
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}  # type: ignore[misc]


def _add_counters(into: dict[str, int], delta: Mapping[str, int], sign: int = 1) -> None:
    for name, n in delta.items():
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"roll-up counter {name!r} must be an int, not {type(n).__name__}")
        into[name] = into.get(name, 0) + sign * n


def _bound(prefix: bytes, values: Any, *, inclusive_end: bool = False) -> bytes:
    key = prefix + pack(_as_tuple(values) or ())
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


# -- collections ---------------------------------------------------------------------------------
class Collection:
    """Records under one key prefix, with their unique and ordered indexes and roll-ups.

    Stateless apart from its definition, so one instance serves every thread. Every method takes
    the caller's transaction: the record and all its index entries change together or not at all.
    """

    def __init__(
        self,
        name: str,
        decode: Callable[[bytes], Any],
        *,
        unique: Sequence[UniqueIndex] = (),
        ordered: Sequence[OrderedIndex] = (),
        rollups: Sequence[Rollup] = (),
    ) -> None:
        self.name = name
        self.decode = decode
        self.unique = {ix.name: ix for ix in unique}
        self.ordered = {ix.name: ix for ix in ordered}
        self.rollups = {r.name: r for r in rollups}
        if len(self.unique) != len(unique) or len(self.ordered) != len(ordered):
            raise ValueError(f"{name}: index names must be distinct")
        self.sequence = SequenceCounter(name)
        self.prefix = pack((NS_COLLECTION, name))
        self.records_prefix = self.prefix + pack(("r",))
        self.unique_prefix = self.prefix + pack(("u",))
        self.hashed_prefix = self.prefix + pack(("uh",))
        self.ordered_prefix = self.prefix + pack(("o",))
        self.rollup_prefix = self.prefix + pack(("s",))

    def __repr__(self) -> str:
        return f"Collection({self.name!r})"

    # -- keys ----------------------------------------------------------------------------------
    def record_key(self, record_id: str) -> bytes:
        return self.records_prefix + pack((id_element(record_id),))

    def _id_from_record_key(self, key: bytes) -> str:
        return id_string(unpack(key[len(self.records_prefix) :])[0])

    def _unique_key(self, index: str, values: tuple[Any, ...]) -> tuple[bytes, bytes | None]:
        """(key, packed values if the key is a hash bucket else None)."""
        packed = pack(values)
        key = self.unique_prefix + pack((index,)) + packed
        if len(key) <= MAX_KEY_SIZE:
            return key, None
        digest = hashlib.sha256(packed).digest()
        return self.hashed_prefix + pack((index, digest)), packed

    def _ordered_key(self, index: str, values: tuple[Any, ...], id_el: int | str) -> bytes:
        return self.ordered_prefix + pack((index, *(clip(v) for v in values), id_el))

    def _rollup_key(self, rollup: str, bucket: tuple[Any, ...]) -> bytes:
        return self.rollup_prefix + pack((rollup, *bucket))

    # -- what a record should have -------------------------------------------------------------
    def unique_values(self, record: Any) -> dict[str, tuple[Any, ...]]:
        out = {}
        for ix in self.unique.values():
            v = _as_tuple(ix.extract(record))
            if v is not None:
                out[ix.name] = v
        return out

    def ordered_keys(self, record_id: str, record: Any) -> set[bytes]:
        id_el = id_element(record_id)
        return {
            self._ordered_key(ix.name, values, id_el)
            for ix in self.ordered.values()
            for values in _entries(ix.extract(record))
        }

    def rollup_deltas(self, record: Any) -> dict[bytes, dict[str, int]]:
        out: dict[bytes, dict[str, int]] = {}
        for r in self.rollups.values():
            got = r.extract(record)
            if got is None:
                continue
            for bucket, counters in got if isinstance(got, list) else [got]:
                key = self._rollup_key(r.name, _as_tuple(bucket) or ())
                _add_counters(out.setdefault(key, {}), counters)
        return out

    # -- unique claims -------------------------------------------------------------------------
    def _claim(self, txn: Transaction, index: str, values: tuple[Any, ...], record_id: str) -> None:
        key, packed = self._unique_key(index, values)
        id_el = id_element(record_id)
        if packed is None:
            if txn.put(key, pack((id_el,)), overwrite=False):
                return
            raw = txn.get(key)
            if raw is None:  # cannot happen while writers are serialised; claim it then
                txn.put(key, pack((id_el,)))
                return
            holder = id_string(unpack(raw)[0])
            if holder != record_id:
                raise UniqueViolation(self.name, index, values, holder)
            return
        # A long value is claimed through its sha256: the bucket holds the full values, so a
        # digest collision between two different values is two entries, never a false equality.
        entry = pack((id_el, packed))
        if txn.put(key, entry, overwrite=False):
            return
        bucket = self._bucket(txn.get(key))
        for holder_el, full in bucket:
            if full == packed:
                if id_string(holder_el) != record_id:
                    raise UniqueViolation(self.name, index, values, id_string(holder_el))
                return
        txn.put(key, (txn.get(key) or b"") + entry)

    @staticmethod
    def _bucket(raw: bytes | None) -> list[tuple[Any, bytes]]:
        flat = unpack(raw or b"")
        return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]  # type: ignore[misc]

    def _free(self, txn: Transaction, index: str, values: tuple[Any, ...], record_id: str) -> None:
        key, packed = self._unique_key(index, values)
        raw = txn.get(key)
        if raw is None:
            return
        id_el = id_element(record_id)
        if packed is None:
            if unpack(raw)[0] == id_el:  # never free a claim another record holds
                txn.delete(key)
            return
        rest = [(h, full) for h, full in self._bucket(raw) if not (h == id_el and full == packed)]
        if rest:
            txn.put(key, pack([x for pair in rest for x in pair]))
        else:
            txn.delete(key)

    def _claim_all(
        self, txn: Transaction, claims: Mapping[str, tuple[Any, ...]], record_id: str
    ) -> None:
        """Claim every value or none: on a violation the claims made so far are undone, so a
        caller that catches the error and carries on commits no stray claim."""
        done: list[tuple[str, tuple[Any, ...]]] = []
        try:
            for index, values in claims.items():
                self._claim(txn, index, values, record_id)
                done.append((index, values))
        except BaseException:
            for index, values in done:
                self._free(txn, index, values, record_id)
            raise

    # -- roll-ups ------------------------------------------------------------------------------
    def _apply_rollups(self, txn: Transaction, deltas: Mapping[bytes, Mapping[str, int]]) -> None:
        for key, delta in deltas.items():
            if not any(delta.values()):
                continue
            raw = txn.get(key)
            counters = {} if raw is None else _unpack_counters(raw)
            _add_counters(counters, delta)
            counters = {k: v for k, v in counters.items() if v}
            # An all-zero bucket is deleted, so live buckets always equal a rebuild's.
            if counters:
                txn.put(key, _pack_counters(counters))
            else:
                txn.delete(key)

    # -- records -------------------------------------------------------------------------------
    def next_id(self, txn: Transaction) -> str:
        return self.sequence.next_id(txn)

    def get(self, txn: Transaction, record_id: str) -> bytes | None:
        return txn.get(self.record_key(record_id))

    def get_record(self, txn: Transaction, record_id: str) -> Any | None:
        raw = self.get(txn, record_id)
        return None if raw is None else self.decode(raw)

    def insert(
        self, txn: Transaction, record_id: str, value: bytes, record: Any = None
    ) -> None:
        """Store a new record and its index entries; DuplicateRecord if the id exists,
        UniqueViolation if a unique value is taken (nothing is written then)."""
        key = self.record_key(record_id)
        if txn.get(key) is not None:
            raise DuplicateRecord(self.name, record_id)
        record = self.decode(value) if record is None else record
        self._claim_all(txn, self.unique_values(record), record_id)
        txn.put(key, value)
        for k in self.ordered_keys(record_id, record):
            txn.put(k, b"")
        self._apply_rollups(txn, self.rollup_deltas(record))
        id_el = id_element(record_id)
        if isinstance(id_el, int):
            self.sequence.advance_to(txn, id_el)

    def update(
        self, txn: Transaction, record_id: str, value: bytes, record: Any = None
    ) -> bytes:
        """Replace a record, moving the index entries whose values changed; returns the old
        bytes. RecordNotFound if absent; UniqueViolation leaves everything as it was."""
        key = self.record_key(record_id)
        old_raw = txn.get(key)
        if old_raw is None:
            raise RecordNotFound(self.name, record_id)
        old = self.decode(old_raw)
        new = self.decode(value) if record is None else record
        old_u, new_u = self.unique_values(old), self.unique_values(new)
        moved = {ix: v for ix, v in new_u.items() if old_u.get(ix) != v}
        self._claim_all(txn, moved, record_id)  # claim first: a violation changes nothing
        for ix, v in old_u.items():
            if new_u.get(ix) != v:
                self._free(txn, ix, v, record_id)
        old_o, new_o = self.ordered_keys(record_id, old), self.ordered_keys(record_id, new)
        for k in old_o - new_o:
            txn.delete(k)
        for k in new_o - old_o:
            txn.put(k, b"")
        deltas = self.rollup_deltas(new)
        for k, d in self.rollup_deltas(old).items():
            _add_counters(deltas.setdefault(k, {}), d, -1)
        self._apply_rollups(txn, deltas)
        txn.put(key, value)
        return old_raw

    def put(self, txn: Transaction, record_id: str, value: bytes, record: Any = None) -> bool:
        """Insert or update (an upsert); True if the record was created."""
        if txn.get(self.record_key(record_id)) is None:
            self.insert(txn, record_id, value, record)
            return True
        self.update(txn, record_id, value, record)
        return False

    def delete(self, txn: Transaction, record_id: str) -> bool:
        """Remove a record and its index entries; False if there was none."""
        key = self.record_key(record_id)
        raw = txn.get(key)
        if raw is None:
            return False
        old = self.decode(raw)
        for ix, v in self.unique_values(old).items():
            self._free(txn, ix, v, record_id)
        for k in self.ordered_keys(record_id, old):
            txn.delete(k)
        deltas: dict[bytes, dict[str, int]] = {}
        for k, d in self.rollup_deltas(old).items():
            _add_counters(deltas.setdefault(k, {}), d, -1)
        self._apply_rollups(txn, deltas)
        txn.delete(key)
        return True

    def scan(
        self,
        txn: Transaction,
        *,
        after: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[str, bytes]]:
        """(id, bytes) in numeric id order; ``after`` is the last id of the previous page."""
        lo, hi = self.records_prefix, self.records_prefix + END
        if after is not None:
            if reverse:
                hi = self.record_key(after)
            else:
                lo = self.record_key(after) + b"\x00"
        for k, v in txn.scan(lo, hi, reverse=reverse, limit=limit):
            yield self._id_from_record_key(k), v

    # -- reading indexes -----------------------------------------------------------------------
    def lookup(self, txn: Transaction, index: str, value: Any) -> str | None:
        """The id holding ``value`` in unique index ``index``, or None."""
        if index not in self.unique:
            raise KeyError(f"{self.name} has no unique index {index!r}")
        values = _as_tuple(value)
        if values is None:
            return None
        key, packed = self._unique_key(index, values)
        raw = txn.get(key)
        if raw is None:
            return None
        if packed is None:
            return id_string(unpack(raw)[0])
        for holder, full in self._bucket(raw):
            if full == packed:
                return id_string(holder)
        return None

    def _index_range(
        self,
        index: str,
        prefix: Any,
        start: Any,
        end: Any,
        end_inclusive: bool,
        after: bytes | None,
        reverse: bool,
    ) -> tuple[bytes, bytes]:
        if index not in self.ordered:
            raise KeyError(f"{self.name} has no ordered index {index!r}")
        base = self.ordered_prefix + pack((index, *(clip(v) for v in _as_tuple(prefix) or ())))
        lo = base if start is None else base + pack(clip(v) for v in _as_tuple(start) or ())
        if end is None:
            hi = base + END
        else:
            hi = base + pack(clip(v) for v in _as_tuple(end) or ())
            if end_inclusive:
                hi += END  # every entry whose values start with ``end``, whatever its id
        if after is not None:
            if reverse:
                hi = min(hi, after)
            else:
                lo = max(lo, after + b"\x00")
        return lo, hi

    def query_keys(
        self,
        txn: Transaction,
        index: str,
        prefix: Any = (),
        *,
        start: Any = None,
        end: Any = None,
        end_inclusive: bool = False,
        reverse: bool = False,
        limit: int | None = None,
        after: bytes | None = None,
    ) -> Iterator[tuple[bytes, str]]:
        """(index key, id) of the entries in range; the key is the cursor for ``after``."""
        lo, hi = self._index_range(index, prefix, start, end, end_inclusive, after, reverse)
        for k, _ in txn.scan(lo, hi, reverse=reverse, limit=limit):
            yield k, id_string(unpack(k)[-1])

    def query(
        self,
        txn: Transaction,
        index: str,
        prefix: Any = (),
        *,
        start: Any = None,
        end: Any = None,
        end_inclusive: bool = False,
        reverse: bool = False,
        limit: int | None = None,
        after: bytes | None = None,
        values: bool = False,
    ) -> list[Any]:
        """Ids (or (id, bytes) with ``values=True``) of ordered index ``index``.

        ``prefix`` fixes the leading fields; ``start`` (inclusive) and ``end`` (exclusive, or
        inclusive of every entry starting with it when ``end_inclusive``) bound the fields after
        it. Only the keys in range are read.
        """
        ids = [
            i
            for _, i in self.query_keys(
                txn, index, prefix, start=start, end=end, end_inclusive=end_inclusive,
                reverse=reverse, limit=limit, after=after,
            )
        ]
        if not values:
            return ids
        out = []
        for i in ids:
            raw = self.get(txn, i)
            if raw is not None:
                out.append((i, raw))
        return out

    def query_page(
        self, txn: Transaction, index: str, prefix: Any = (), *, limit: int, **kwargs: Any
    ) -> tuple[list[tuple[str, bytes]], bytes | None]:
        """One page of (id, bytes) and the cursor of the next page (None: this is the last)."""
        hits = list(self.query_keys(txn, index, prefix, limit=limit + 1, **kwargs))
        more = len(hits) > limit
        hits = hits[:limit]
        items = [(i, raw) for _, i in hits if (raw := self.get(txn, i)) is not None]
        return items, (hits[-1][0] if more and hits else None)

    def rollup_range(
        self,
        txn: Transaction,
        rollup: str,
        prefix: Any = (),
        *,
        start: Any = None,
        end: Any = None,
        end_inclusive: bool = False,
        reverse: bool = False,
    ) -> Iterator[tuple[tuple[Any, ...], dict[str, int]]]:
        """(bucket, counters) in bucket order, bounded like :meth:`query`."""
        if rollup not in self.rollups:
            raise KeyError(f"{self.name} has no roll-up {rollup!r}")
        base = self.rollup_prefix + pack((rollup,)) + pack(_as_tuple(prefix) or ())
        lo = base if start is None else _bound(base, start)
        hi = base + END if end is None else _bound(base, end, inclusive_end=end_inclusive)
        skip = len(self.rollup_prefix + pack((rollup,)))
        for k, v in txn.scan(lo, hi, reverse=reverse):
            yield unpack(k[skip:]), _unpack_counters(v)

    def rollup_total(self, txn: Transaction, rollup: str, prefix: Any = (), **kw: Any) -> dict:
        total: dict[str, int] = {}
        for _, counters in self.rollup_range(txn, rollup, prefix, **kw):
            _add_counters(total, counters)
        return total


# -- TTL keys ------------------------------------------------------------------------------------
class TtlSpace:
    """Keys that are "seen" for a while (idempotency): reserve() says whether a key is new.

    A key is live until its expiry; an expired key counts as new again (and is refreshed); a
    TTL of 0 never expires. Expired keys are found through the expiry index and purged by
    :meth:`sweep` in short batches, not kept forever.
    """

    #: Keys longer than this are identified by their sha256 (and kept whole in the value).
    KEY_LIMIT = 400

    def __init__(self, name: str) -> None:
        self.name = name
        self.prefix = pack((NS_TTL, name))
        self.expiry_prefix = self.prefix + pack(("x",))

    def _suffix(self, key: str | bytes) -> bytes:
        if not isinstance(key, (str, bytes)):
            raise TypeError(f"TTL keys are str or bytes, not {type(key).__name__}")
        short = pack(("k", key))
        if len(short) <= self.KEY_LIMIT:
            return short
        # The type goes into the digest so that a str key and its UTF-8 bytes stay distinct, as
        # they are when short. Two long keys collide only if sha256 does: accepted here, unlike
        # unique indexes, since a collision costs one message taken for a duplicate.
        raw = b"s:" + key.encode("utf-8", "surrogatepass") if isinstance(key, str) else b"b:" + key
        return pack(("h", hashlib.sha256(raw).digest()))

    @staticmethod
    def _now_us(now: float | None) -> int:
        return int((time.time() if now is None else now) * 1_000_000)

    def _expiry_key(self, expires_us: int, suffix: bytes) -> bytes:
        return self.expiry_prefix + pack((expires_us,)) + suffix

    def reserve(
        self, txn: Transaction, key: str | bytes, ttl_seconds: float, now: float | None = None
    ) -> bool:
        """True if ``key`` is first seen (new, or expired and now refreshed); False if live."""
        if ttl_seconds < 0:
            raise ValueError("ttl_seconds must be >= 0 (0: never expires)")
        suffix = self._suffix(key)
        main = self.prefix + suffix
        now_us = self._now_us(now)
        expires_us = now_us + round(ttl_seconds * 1_000_000) if ttl_seconds else 0
        value = pack((expires_us, key))
        if not txn.put(main, value, overwrite=False):
            old_expires = unpack(txn.get(main) or pack((0,)))[0]
            if old_expires == 0 or now_us < old_expires:  # type: ignore[operator]
                return False
            txn.delete(self._expiry_key(old_expires, suffix))  # type: ignore[arg-type]
            txn.put(main, value)
        if expires_us:
            txn.put(self._expiry_key(expires_us, suffix), b"")
        return True

    def expires_at(self, txn: Transaction, key: str | bytes) -> float | None:
        """Expiry time in seconds (0.0: never), or None if the key is not held."""
        raw = txn.get(self.prefix + self._suffix(key))
        return None if raw is None else unpack(raw)[0] / 1_000_000  # type: ignore[operator]

    def release(self, txn: Transaction, key: str | bytes) -> bool:
        suffix = self._suffix(key)
        raw = txn.get(self.prefix + suffix)
        if raw is None:
            return False
        expires = unpack(raw)[0]
        if expires:
            txn.delete(self._expiry_key(expires, suffix))  # type: ignore[arg-type]
        return txn.delete(self.prefix + suffix)

    def sweep(self, store: Store, *, batch_size: int = 256, now: float | None = None) -> int:
        """Delete keys expired at ``now``; each batch is its own short write transaction, so
        writers are never held up for long. Returns how many keys were purged."""
        now_us = self._now_us(now)
        hi = self.expiry_prefix + pack((now_us,)) + END  # expired: expires_us <= now_us
        purged = 0
        skip = len(self.expiry_prefix)
        while True:
            with store.begin(write=True) as txn:
                batch = [k for k, _ in txn.scan(self.expiry_prefix, hi, limit=batch_size)]
                for k in batch:
                    expires, *rest = unpack(k[skip:])
                    main = self.prefix + pack(rest)
                    raw = txn.get(main)
                    # The expiry entry may be stale only if the key was refreshed or released
                    # without it; never delete a key whose current expiry is another one.
                    if raw is not None and unpack(raw)[0] == expires:
                        txn.delete(main)
                        purged += 1
                    txn.delete(k)
            if len(batch) < batch_size:
                return purged


class TtlSweeper:
    """A daemon thread sweeping TTL spaces every ``interval`` seconds (clock injectable)."""

    def __init__(
        self,
        store: Store,
        spaces: Iterable[TtlSpace],
        interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        *,
        batch_size: int = 256,
    ) -> None:
        self.store = store
        self.spaces = list(spaces)
        self.interval = interval
        self.clock = clock
        self.batch_size = batch_size
        self.purged = 0
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        n = 0
        for space in self.spaces:
            n += space.sweep(self.store, batch_size=self.batch_size, now=self.clock())
        self.purged += n
        self.runs += 1
        return n

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a transient store failure must not end the sweeper
                log.exception("TTL sweep failed; retrying in %.1f s", self.interval)
            self._stop.wait(self.interval)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the sweeper is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ttl-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


# -- consistency check and repair ------------------------------------------------------------------
@dataclass
class Problem:
    collection: str
    kind: str  # missing_entry, dangling_entry, wrong_entry, duplicate_unique, rollup_mismatch,
    #            undecodable_record, unknown_index, sequence_behind
    index: str | None
    record_id: str | None
    detail: str
    key: bytes | None = None


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    records: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def __str__(self) -> str:
        head = ", ".join(f"{c}: {n} records" for c, n in self.records.items())
        lines = [head or "no collections"]
        lines += [
            f"{p.collection}: {p.kind} [{p.index or '-'}] record {p.record_id}: {p.detail}"
            for p in self.problems
        ]
        return "\n".join(lines)


def _check_collection(txn: Transaction, c: Collection, report: CheckReport) -> None:
    def problem(kind: str, index: str | None, rid: str | None, detail: str, key=None) -> None:
        report.problems.append(Problem(c.name, kind, index, rid, detail, key))

    cache: dict[str, Any] = {}

    def record_of(rid: str) -> Any:
        if rid not in cache:
            raw = c.get(txn, rid)
            try:
                cache[rid] = None if raw is None else c.decode(raw)
            except Exception:
                cache[rid] = None
            if len(cache) > 10_000:  # bound memory on large collections
                cache.clear()
        return cache[rid]

    # 1. every record has its entries (point lookups; roll-ups summed in memory, per bucket)
    expected_rollups: dict[bytes, dict[str, int]] = {}
    count = 0
    max_id = 0
    for rid, raw in c.scan(txn):
        count += 1
        id_el = id_element(rid)
        if isinstance(id_el, int):
            max_id = max(max_id, id_el)
        try:
            rec = c.decode(raw)
        except Exception as exc:
            problem("undecodable_record", None, rid, repr(exc))
            continue
        for ix, values in c.unique_values(rec).items():
            holder = c.lookup(txn, ix, values)
            if holder == rid:
                continue
            if holder is not None:
                other = record_of(holder)
                if other is not None and c.unique_values(other).get(ix) == values:
                    problem("duplicate_unique", ix, rid, f"{values!r} also held by {holder}")
                    continue
            problem("missing_entry", ix, rid, f"unique value {values!r} not claimed by it")
        for k in c.ordered_keys(rid, rec):
            if txn.get(k) is None:
                ix_name = str(unpack(k[len(c.ordered_prefix) :])[0])
                problem("missing_entry", ix_name, rid, "ordered entry absent", k)
        for k, d in c.rollup_deltas(rec).items():
            _add_counters(expected_rollups.setdefault(k, {}), d)
    report.records[c.name] = count
    if c.sequence.current(txn) < max_id:
        problem("sequence_behind", None, str(max_id),
                f"sequence at {c.sequence.current(txn)} below the highest id {max_id}")

    # 2. every entry points at a record that wants it
    for k, v in txn.scan(prefix=c.unique_prefix):
        claim = unpack(k[len(c.unique_prefix) :])
        rid = id_string(unpack(v)[0])
        _check_claim(c, problem, record_of, str(claim[0]), claim[1:], rid, k)
    for k, v in txn.scan(prefix=c.hashed_prefix):
        ix_el, digest = unpack(k[len(c.hashed_prefix) :])
        ix = str(ix_el)
        for holder, full in c._bucket(v):
            if hashlib.sha256(full).digest() != digest:
                problem("wrong_entry", ix, id_string(holder), "bucket entry under another hash", k)
                continue
            _check_claim(c, problem, record_of, ix, unpack(full), id_string(holder), k)
    for k, _ in txn.scan(prefix=c.ordered_prefix):
        parts = unpack(k[len(c.ordered_prefix) :])
        ix, rid = str(parts[0]), id_string(parts[-1])
        if ix not in c.ordered:
            problem("unknown_index", ix, rid, "entry of an index not defined", k)
            continue
        rec = record_of(rid)
        if rec is None:
            problem("dangling_entry", ix, rid, "ordered entry of a missing record", k)
        elif k not in c.ordered_keys(rid, rec):
            problem("wrong_entry", ix, rid, f"stale ordered entry {parts[1:-1]!r}", k)

    # 3. roll-up buckets equal the sums over the records
    for k, v in txn.scan(prefix=c.rollup_prefix):
        want = expected_rollups.pop(k, None)
        have = _unpack_counters(v)
        if want is None or {n: x for n, x in want.items() if x} != have:
            parts = unpack(k[len(c.rollup_prefix) :])
            problem("rollup_mismatch", str(parts[0]), None,
                    f"bucket {parts[1:]!r} holds {have}, records sum to {want or {}}", k)
    for k, want in expected_rollups.items():
        if any(want.values()):
            parts = unpack(k[len(c.rollup_prefix) :])
            problem("rollup_mismatch", str(parts[0]), None,
                    f"bucket {parts[1:]!r} missing, records sum to {want}", k)


def _check_claim(c, problem, record_of, ix, values, rid, key) -> None:
    if ix not in c.unique:
        problem("unknown_index", ix, rid, "claim of an index not defined", key)
        return
    rec = record_of(rid)
    if rec is None:
        problem("dangling_entry", ix, rid, f"claim of {values!r} by a missing record", key)
    elif c.unique_values(rec).get(ix) != values:
        problem("wrong_entry", ix, rid, f"stale claim of {values!r}", key)


def check(store: Store, collections: Iterable[Collection]) -> CheckReport:
    """Walk every collection and report index entries that disagree with the records."""
    report = CheckReport()
    for c in collections:
        with store.begin() as txn:
            _check_collection(txn, c, report)
    return report


def repair(
    store: Store, collections: Iterable[Collection], *, batch_size: int = 500
) -> CheckReport:
    """Rebuild every index and roll-up of ``collections`` from their records.

    Runs in batches of short write transactions, so run it with writers stopped (a tool, at
    maintenance time). Records that share a unique value cannot both hold it: the lowest id
    keeps the claim and the others are returned as ``duplicate_unique`` problems to resolve by
    hand; undecodable records are skipped and returned likewise.
    """
    report = CheckReport()
    for c in collections:
        for ns in (c.unique_prefix, c.hashed_prefix, c.ordered_prefix, c.rollup_prefix):
            while True:
                with store.begin(write=True) as txn:
                    doomed = [k for k, _ in txn.scan(prefix=ns, limit=batch_size)]
                    for k in doomed:
                        txn.delete(k)
                if len(doomed) < batch_size:
                    break
        sums: dict[bytes, dict[str, int]] = {}
        after: str | None = None
        count = 0
        while True:
            with store.begin(write=True) as txn:
                rows = list(c.scan(txn, after=after, limit=batch_size))
                for rid, raw in rows:
                    count += 1
                    try:
                        rec = c.decode(raw)
                    except Exception as exc:
                        report.problems.append(
                            Problem(c.name, "undecodable_record", None, rid, repr(exc))
                        )
                        continue
                    for ix, values in c.unique_values(rec).items():
                        try:
                            c._claim(txn, ix, values, rid)
                        except UniqueViolation as exc:
                            report.problems.append(
                                Problem(c.name, "duplicate_unique", ix, rid, str(exc))
                            )
                    for k in c.ordered_keys(rid, rec):
                        txn.put(k, b"")
                    for k, d in c.rollup_deltas(rec).items():
                        _add_counters(sums.setdefault(k, {}), d)
                    id_el = id_element(rid)
                    if isinstance(id_el, int):
                        c.sequence.advance_to(txn, id_el)
            if len(rows) < batch_size:
                break
            after = rows[-1][0]
        items = [(k, {n: x for n, x in d.items() if x}) for k, d in sums.items()]
        items = [(k, d) for k, d in items if d]
        for i in range(0, len(items), batch_size):
            with store.begin(write=True) as txn:
                for k, d in items[i : i + batch_size]:
                    txn.put(k, _pack_counters(d))
        report.records[c.name] = count
    return report
