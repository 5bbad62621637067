"""A collection: records under one key prefix, with their unique and ordered indexes and
roll-ups, all written in the record's transaction."""

from __future__ import annotations

import hashlib
import heapq
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from engine.indexes.conflicts import DuplicateRecord, RecordNotFound, UniqueViolation
from engine.indexes.definitions import (
    OrderedIndex,
    Rollup,
    SequenceCounter,
    UniqueIndex,
    add_counters,
    as_tuple,
    entries_of,
    key_bound,
    pack_counters,
    unpack_counters,
)
from engine.indexes.layout import NS_COLLECTION
from engine.interface import MAX_KEY_SIZE, Transaction
from engine.keys import END, clip, id_element, id_string, pack, unpack


class Collection:
    """Records under one key prefix, with their unique and ordered indexes and roll-ups.

    Stateless apart from its definition (and the id blocks of its sequence), so one instance
    serves every thread and store. Every method takes the caller's transaction: the record and all
    its index entries change together or not at all.
    """

    #: Shards per roll-up bucket (see :meth:`shard_of`).
    ROLLUP_SHARDS = 16

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
        #: Roll-up buckets as stores before 2026-12 wrote them, one key per bucket: still read
        #: (summed with the shards), never written; ``repair`` folds them into shards.
        self.rollup_prefix = self.prefix + pack(("s",))
        self.shard_prefix = self.prefix + pack(("sh",))

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

    def shard_key(self, bucket: bytes, shard: int) -> bytes:
        """The key of one shard of a roll-up bucket (``bucket`` as :meth:`rollup_deltas` names
        it: ``pack((rollup, *bucket values))``)."""
        return self.shard_prefix + bucket + pack((shard,))

    def bucket_of_shard_key(self, key: bytes) -> bytes:
        """The bucket (as :meth:`rollup_deltas` names it) of a key under ``shard_prefix``."""
        return pack(unpack(key[len(self.shard_prefix) :])[:-1])

    def shard_of(self, record_id: str) -> int:
        """The roll-up shard a record's counters go to: its id modulo ``ROLLUP_SHARDS``, so that
        concurrent records rarely meet on one key and a record's update and delete find its own
        shard. The same on every backend, so that a store rebuilt after a migration (indexes
        rebuilt from the records) holds the very same keys."""
        id_el = id_element(record_id)
        if isinstance(id_el, int):
            return id_el % self.ROLLUP_SHARDS
        return zlib.crc32(id_el.encode("utf-8", "surrogatepass")) % self.ROLLUP_SHARDS

    # -- what a record should have -------------------------------------------------------------
    def unique_values(self, record: Any) -> dict[str, tuple[Any, ...]]:
        out = {}
        for ix in self.unique.values():
            v = as_tuple(ix.extract(record))
            if v is not None:
                out[ix.name] = v
        return out

    def ordered_keys(self, record_id: str, record: Any) -> set[bytes]:
        id_el = id_element(record_id)
        return {
            self._ordered_key(ix.name, values, id_el)
            for ix in self.ordered.values()
            for values in entries_of(ix.extract(record))
        }

    def rollup_deltas(self, record: Any) -> dict[bytes, dict[str, int]]:
        """The record's counters per bucket, named ``pack((rollup, *bucket values))``."""
        out: dict[bytes, dict[str, int]] = {}
        for r in self.rollups.values():
            got = r.extract(record)
            if got is None:
                continue
            for bucket, counters in got if isinstance(got, list) else [got]:
                key = pack((r.name, *(as_tuple(bucket) or ())))
                add_counters(out.setdefault(key, {}), counters)
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
        except UniqueViolation:  # (a failed statement leaves nothing to undo: it aborts all)
            for index, values in done:
                self._free(txn, index, values, record_id)
            raise

    # -- roll-ups ------------------------------------------------------------------------------
    def _apply_rollups(
        self, txn: Transaction, record_id: str, deltas: Mapping[bytes, Mapping[str, int]]
    ) -> None:
        shard = self.shard_of(record_id)
        for bucket, delta in deltas.items():
            if not any(delta.values()):
                continue
            key = self.shard_key(bucket, shard)
            raw = txn.get(key)
            counters = {} if raw is None else unpack_counters(raw)
            add_counters(counters, delta)
            counters = {k: v for k, v in counters.items() if v}
            # An all-zero shard is deleted, so live shards always equal a rebuild's (and a
            # shard may go below zero: a record counted in a pre-shard bucket, deleted now).
            if counters:
                txn.put(key, pack_counters(counters))
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
        record = self.decode(value) if record is None else record
        # Insert-if-absent rather than a read first: on postgresql a read locks the index page
        # (SSI tracks pages), and concurrent creates, whose new ids share that page, would then
        # fail one another.
        if not txn.put(key, value, overwrite=False):
            raise DuplicateRecord(self.name, record_id)
        try:
            self._claim_all(txn, self.unique_values(record), record_id)
        except UniqueViolation:
            txn.delete(key)  # a caller that catches the violation and commits keeps nothing
            raise
        for k in self.ordered_keys(record_id, record):
            txn.put(k, b"")
        self._apply_rollups(txn, record_id, self.rollup_deltas(record))
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
            add_counters(deltas.setdefault(k, {}), d, -1)
        self._apply_rollups(txn, record_id, deltas)
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
            add_counters(deltas.setdefault(k, {}), d, -1)
        self._apply_rollups(txn, record_id, deltas)
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
        values = as_tuple(value)
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
        base = self.ordered_prefix + pack((index, *(clip(v) for v in as_tuple(prefix) or ())))
        lo = base if start is None else base + pack(clip(v) for v in as_tuple(start) or ())
        if end is None:
            hi = base + END
        else:
            hi = base + pack(clip(v) for v in as_tuple(end) or ())
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
        """(bucket, counters) in bucket order, bounded like :meth:`query`: the sum of the
        bucket's shards (and of its pre-shard key, in a store written before shards)."""
        if rollup not in self.rollups:
            raise KeyError(f"{self.name} has no roll-up {rollup!r}")
        base = pack((rollup,)) + pack(as_tuple(prefix) or ())
        lo = base if start is None else key_bound(base, start)
        hi = base + END if end is None else key_bound(base, end, inclusive_end=end_inclusive)
        skip = len(pack((rollup,)))
        # Both streams in bucket order (the shards of one bucket are adjacent: the shard is the
        # key's last element), merged; consecutive entries of one bucket are summed.
        shards = (
            (pack(unpack(k[len(self.shard_prefix) + skip :])[:-1]), v)
            for k, v in txn.scan(self.shard_prefix + lo, self.shard_prefix + hi, reverse=reverse)
        )
        legacy = (
            (k[len(self.rollup_prefix) + skip :], v)
            for k, v in txn.scan(self.rollup_prefix + lo, self.rollup_prefix + hi,
                                 reverse=reverse)
        )
        bucket: bytes | None = None
        total: dict[str, int] = {}
        for tail, raw in heapq.merge(shards, legacy, key=lambda kv: kv[0], reverse=reverse):
            if tail != bucket:
                if bucket is not None and any(total.values()):
                    yield unpack(bucket), {n: x for n, x in total.items() if x}
                bucket, total = tail, {}
            add_counters(total, unpack_counters(raw))
        if bucket is not None and any(total.values()):
            yield unpack(bucket), {n: x for n, x in total.items() if x}

    def rollup_total(self, txn: Transaction, rollup: str, prefix: Any = (), **kw: Any) -> dict:
        total: dict[str, int] = {}
        for _, counters in self.rollup_range(txn, rollup, prefix, **kw):
            add_counters(total, counters)
        return total
