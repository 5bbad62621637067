"""The consistency check of a collection's indexes against its records, and their repair."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.indexes.collection import Collection
from engine.indexes.conflicts import UniqueViolation
from engine.indexes.definitions import add_counters, pack_counters, unpack_counters
from engine.interface import Store, Transaction
from engine.keys import id_element, id_string, unpack


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


class _CollectionCheck:
    """The check of one collection in one read transaction, in three passes (see :meth:`run`)."""

    def __init__(self, txn: Transaction, c: Collection, report: CheckReport) -> None:
        self.txn = txn
        self.c = c
        self.report = report
        self._records: dict[str, Any] = {}

    def problem(self, kind: str, index: str | None, rid: str | None, detail: str,
                key: bytes | None = None) -> None:
        self.report.problems.append(Problem(self.c.name, kind, index, rid, detail, key))

    def record_of(self, rid: str) -> Any:
        """The decoded record ``rid`` (None: missing or undecodable), cached."""
        cache = self._records
        if rid not in cache:
            raw = self.c.get(self.txn, rid)
            try:
                cache[rid] = None if raw is None else self.c.decode(raw)
            except Exception:
                cache[rid] = None
            if len(cache) > 10_000:  # bound memory on large collections
                cache.clear()
        return cache[rid]

    def run(self) -> None:
        expected_rollups = self.records_have_their_entries()
        self.entries_point_at_records()
        self.rollups_equal_the_sums(expected_rollups)

    def records_have_their_entries(self) -> dict[bytes, dict[str, int]]:
        """1. Every record has its entries (point lookups); returns the roll-up sums per bucket,
        computed in memory on the way."""
        txn, c, problem = self.txn, self.c, self.problem
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
                    other = self.record_of(holder)
                    if other is not None and c.unique_values(other).get(ix) == values:
                        problem("duplicate_unique", ix, rid, f"{values!r} also held by {holder}")
                        continue
                problem("missing_entry", ix, rid, f"unique value {values!r} not claimed by it")
            for k in c.ordered_keys(rid, rec):
                if txn.get(k) is None:
                    ix_name = str(unpack(k[len(c.ordered_prefix) :])[0])
                    problem("missing_entry", ix_name, rid, "ordered entry absent", k)
            for k, d in c.rollup_deltas(rec).items():
                add_counters(expected_rollups.setdefault(k, {}), d)
        self.report.records[c.name] = count
        if c.sequence.current(txn) < max_id:
            problem("sequence_behind", None, str(max_id),
                    f"sequence at {c.sequence.current(txn)} below the highest id {max_id}")
        return expected_rollups

    def entries_point_at_records(self) -> None:
        """2. Every entry points at a record that wants it."""
        txn, c, problem = self.txn, self.c, self.problem
        for k, v in txn.scan(prefix=c.unique_prefix):
            claim = unpack(k[len(c.unique_prefix) :])
            self.claim_is_wanted(str(claim[0]), claim[1:], id_string(unpack(v)[0]), k)
        for k, v in txn.scan(prefix=c.hashed_prefix):
            ix_el, digest = unpack(k[len(c.hashed_prefix) :])
            ix = str(ix_el)
            for holder, full in c._bucket(v):
                if hashlib.sha256(full).digest() != digest:
                    problem("wrong_entry", ix, id_string(holder),
                            "bucket entry under another hash", k)
                    continue
                self.claim_is_wanted(ix, unpack(full), id_string(holder), k)
        for k, _ in txn.scan(prefix=c.ordered_prefix):
            parts = unpack(k[len(c.ordered_prefix) :])
            ix, rid = str(parts[0]), id_string(parts[-1])
            if ix not in c.ordered:
                problem("unknown_index", ix, rid, "entry of an index not defined", k)
                continue
            rec = self.record_of(rid)
            if rec is None:
                problem("dangling_entry", ix, rid, "ordered entry of a missing record", k)
            elif k not in c.ordered_keys(rid, rec):
                problem("wrong_entry", ix, rid, f"stale ordered entry {parts[1:-1]!r}", k)

    def claim_is_wanted(self, ix: str, values: Any, rid: str, key: bytes) -> None:
        if ix not in self.c.unique:
            self.problem("unknown_index", ix, rid, "claim of an index not defined", key)
            return
        rec = self.record_of(rid)
        if rec is None:
            self.problem("dangling_entry", ix, rid, f"claim of {values!r} by a missing record", key)
        elif self.c.unique_values(rec).get(ix) != values:
            self.problem("wrong_entry", ix, rid, f"stale claim of {values!r}", key)

    def rollups_equal_the_sums(self, expected_rollups: dict[bytes, dict[str, int]]) -> None:
        """3. Each roll-up bucket (its shards and any pre-shard key, summed) equals the sums over
        the records. How a bucket is split over its shards is not checked: reads sum them."""
        c, problem = self.c, self.problem
        have: dict[bytes, dict[str, int]] = {}
        first_key: dict[bytes, bytes] = {}
        for k, v in self.txn.scan(prefix=c.rollup_prefix):
            bucket = k[len(c.rollup_prefix) :]
            add_counters(have.setdefault(bucket, {}), unpack_counters(v))
            first_key.setdefault(bucket, k)
        for k, v in self.txn.scan(prefix=c.shard_prefix):
            bucket = c.bucket_of_shard_key(k)
            add_counters(have.setdefault(bucket, {}), unpack_counters(v))
            first_key.setdefault(bucket, k)
        for bucket in sorted(have.keys() | expected_rollups.keys()):
            held = {n: x for n, x in have.get(bucket, {}).items() if x}
            want = {n: x for n, x in expected_rollups.get(bucket, {}).items() if x}
            if held != want:
                parts = unpack(bucket)
                where = "missing" if bucket not in have else f"holds {held}"
                problem("rollup_mismatch", str(parts[0]), None,
                        f"bucket {parts[1:]!r} {where}, records sum to {want}",
                        first_key.get(bucket))


def check(store: Store, collections: Iterable[Collection]) -> CheckReport:
    """Walk every collection and report index entries that disagree with the records."""
    report = CheckReport()
    for c in collections:
        with store.begin() as txn:
            _CollectionCheck(txn, c, report).run()
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
        _erase_entries(store, c, batch_size)
        sums = _rebuild_entries(store, c, report, batch_size)
        # Per shard: the records' sums where each record's own writes put them (shard_of).
        items = [(k, {n: x for n, x in d.items() if x}) for k, d in sums.items()]
        items = [(k, d) for k, d in items if d]
        for i in range(0, len(items), batch_size):
            with store.begin(write=True) as txn:
                for (bucket, shard), d in items[i : i + batch_size]:
                    txn.put(c.shard_key(bucket, shard), pack_counters(d))
    return report


def _erase_entries(store: Store, c: Collection, batch_size: int) -> None:
    """Delete every index entry and roll-up bucket of ``c`` (its records stay)."""
    for ns in (c.unique_prefix, c.hashed_prefix, c.ordered_prefix, c.rollup_prefix,
               c.shard_prefix):
        while True:
            with store.begin(write=True) as txn:
                doomed = [k for k, _ in txn.scan(prefix=ns, limit=batch_size)]
                for k in doomed:
                    txn.delete(k)
            if len(doomed) < batch_size:
                break


def _rebuild_entries(
    store: Store, c: Collection, report: CheckReport, batch_size: int
) -> dict[tuple[bytes, int], dict[str, int]]:
    """Write the unique claims and ordered entries of every record of ``c`` and advance its
    sequence; returns the roll-up sums per (bucket, shard) (written by the caller)."""
    sums: dict[tuple[bytes, int], dict[str, int]] = {}
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
                shard = c.shard_of(rid)
                for k, d in c.rollup_deltas(rec).items():
                    add_counters(sums.setdefault((k, shard), {}), d)
                id_el = id_element(rid)
                if isinstance(id_el, int):
                    c.sequence.advance_to(txn, id_el)
        if len(rows) < batch_size:
            break
        after = rows[-1][0]
    report.records[c.name] = count
    return sums
