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
            add_counters(expected_rollups.setdefault(k, {}), d)
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
        have = unpack_counters(v)
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
                        add_counters(sums.setdefault(k, {}), d)
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
                    txn.put(k, pack_counters(d))
        report.records[c.name] = count
    return report
