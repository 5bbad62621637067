"""Scale workloads: the same query on a large store and on a small one (lmdb, through the engine).

The token-usage stores are filled through the domain's own repository functions
(``repository.next_id`` / ``repository.insert``, which write each record with its indexes and
hourly roll-ups) in transactions of 20 000 records, with ``createdAt`` spread evenly over 30 days;
filling through HTTP or one transaction per record would take hours at a million records. The query
is what a dashboard asks: statistics per model plus the total cost over those 30 days, on day
boundaries, so it reads roll-up buckets (the partial hours at the ends are empty).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from engine import Store
from tools.bench.core import (
    Comparison,
    Config,
    Sample,
    Side,
    Target,
    Tmp,
    iter_chunks,
    key_of,
    timed_loop,
)
from tools.bench.engine_bench import engine_store, fill_raw_lmdb, fill_store, raw_lmdb

DAYS = 30
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MODELS = ("gpt-4o", "claude-sonnet", "llama-3-70b", None)


def fill_token_usage(store: Store, n: int, batch: int = 20_000) -> float:
    """``n`` records over 30 days through the repository, in large transactions; seconds taken."""
    from domains.token_usage import repository
    from domains.token_usage.models import ASSISTANT, USER, TokenUsageRecord

    started = time.perf_counter()
    span_ms = DAYS * 86_400_000
    for chunk in iter_chunks(n, batch):
        with store.begin(write=True) as txn:
            for i in chunk:
                created = START + dt.timedelta(milliseconds=i * span_ms // n)
                record = TokenUsageRecord(
                    token_usage_record_id=repository.next_id(txn),
                    agent_id=f"agent-{i % 97}", role=USER if i % 2 == 0 else ASSISTANT,
                    token_count=100 + i % 50, cost_nanos=1_000_000 + i % 1000,
                    llm_model=MODELS[i % len(MODELS)], created_at=created,
                )
                repository.insert(txn, record)
    return time.perf_counter() - started


@contextmanager
def usage_statistics(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
    from domains.token_usage.service import TokenUsageService

    large = engine_store(tmp, "lmdb")
    small = engine_store(tmp, "lmdb")
    try:
        fill_large = fill_token_usage(large, cfg.scale_large)
        fill_small = fill_token_usage(small, cfg.scale_small)
        start = START
        end = START + dt.timedelta(days=DAYS)
        for name, store in (("large", large), ("small", small)):
            stats = TokenUsageService(store).statistics(start, end)
            if len(stats) != len(MODELS):
                raise AssertionError(f"statistics of the {name} store: {stats}")

        def side(store: Store, n: int, fill_s: float) -> Side:
            service = TokenUsageService(store)

            def op(_i: int) -> None:
                service.statistics(start, end)
                service.total_cost(start, end)

            def run() -> Sample:
                s = timed_loop(op, cfg.engine_seconds, chunk=1)
                s.metrics = {"ms": 1000.0 / s.metrics["ops_per_s"]}
                s.info.update(records=n, fill_seconds=round(fill_s, 1))
                return s

            return run

        yield side(large, cfg.scale_large, fill_large), side(small, cfg.scale_small, fill_small)
    finally:
        large.close()
        small.close()


def _probe_reads(begin: Callable[[], Any], n: int, cfg: Config) -> Side:
    """Point reads of the same number of distinct keys, spread over a store of ``n`` records,
    each in a read transaction of its own from ``begin()``."""
    # 7919 is prime: i * 7919 mod n are distinct keys spread over the whole store.
    keys = [key_of((i * 7919) % n) for i in range(min(cfg.scale_small, 10_000))]

    def op(i: int) -> None:
        with begin() as txn:
            if txn.get(keys[i % len(keys)]) is None:
                raise AssertionError("a filled key is missing")

    def run() -> Sample:
        s = timed_loop(op, cfg.engine_seconds)
        s.info.update(records=n)
        return s

    return run


@contextmanager
def point_reads_at_scale(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
    large = engine_store(tmp, "lmdb")
    small = engine_store(tmp, "lmdb")
    try:
        fill_store(large, cfg.scale_large, cfg.value_size)
        fill_store(small, cfg.scale_small, cfg.value_size)
        yield (_probe_reads(large.begin, cfg.scale_large, cfg),
               _probe_reads(small.begin, cfg.scale_small, cfg))
    finally:
        large.close()
        small.close()


@contextmanager
def raw_point_reads_at_scale(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
    """The same probes on raw py-lmdb: how much of the drop at scale is LMDB's (and the
    machine's caches') own, with no engine in between."""
    large, small = raw_lmdb(tmp), raw_lmdb(tmp)
    try:
        fill_raw_lmdb(large, cfg.scale_large, cfg.value_size)
        fill_raw_lmdb(small, cfg.scale_small, cfg.value_size)
        yield (_probe_reads(large.begin, cfg.scale_large, cfg),
               _probe_reads(small.begin, cfg.scale_small, cfg))
    finally:
        large.close()
        small.close()


def comparisons(cfg: Config, tmp: Tmp) -> list[Comparison]:
    def bind(fn: Any) -> Any:
        return lambda: fn(cfg, tmp)

    note = ("" if cfg.scale_large >= 1_000_000 else
            f"large store of {cfg.scale_large:,} records (the target names 1,000,000: run "
            "without --quick)")
    return [
        Comparison("scale_usage_stats", "scale",
                   f"token-usage statistics + total cost over {DAYS} days, "
                   f"{cfg.scale_large:,} records vs {cfg.scale_small:,}",
                   f"{cfg.scale_large:,} records", f"{cfg.scale_small:,} records",
                   bind(usage_statistics), [Target("ms", "<=", 2.0)], note=note),
        Comparison("scale_point_read", "scale",
                   f"lmdb point read, {cfg.scale_large:,} records vs {cfg.scale_small:,}",
                   f"{cfg.scale_large:,} records", f"{cfg.scale_small:,} records",
                   bind(point_reads_at_scale), [Target("ops_per_s", ">=", 0.8)], note=note),
        # No target: the reference for the row above (the same probes, no engine).
        Comparison("scale_point_read_raw", "scale",
                   f"raw py-lmdb point read, {cfg.scale_large:,} records vs "
                   f"{cfg.scale_small:,} (reference)",
                   f"raw {cfg.scale_large:,} records", f"raw {cfg.scale_small:,} records",
                   bind(raw_point_reads_at_scale), [], note=note),
    ]
