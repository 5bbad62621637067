"""Token usage (domains.md section 5) on every backend: record checks, conversation atomicity,
inclusive ranges, filters and pages, and statistics / total cost from the hourly roll-ups, exact
against a brute-force computation over the records and bounded in what they read."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from domains import token_usage
from domains.common import format_timestamp
from domains.errors import NotFoundError, ValidationError
from domains.token_usage import codec, repository
from domains.token_usage.models import TokenUsageRecord
from domains.token_usage.service import TokenUsageService
from engine import Store
from engine.indexes import check
from tests.domains.counting import CountingStore
from tests.domains.json_commands import TOKEN_USAGE, TOKEN_USAGE_QUERIES, JsonCommands

T0 = dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.UTC)
MS = dt.timedelta(milliseconds=1)
HOUR = dt.timedelta(hours=1)


class ScriptedClock:
    """Returns the times it is told to, then keeps the last one."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def usage_service(store: Store, clock: ScriptedClock | None = None) -> Any:
    """The service driven with JSON bodies and text bounds, as the web layer drives it."""
    service = TokenUsageService(store) if clock is None else TokenUsageService(store, clock=clock)
    return JsonCommands(service, TOKEN_USAGE, TOKEN_USAGE_QUERIES)


@pytest.fixture
def clock() -> ScriptedClock:
    return ScriptedClock()


@pytest.fixture
def svc(store: Store, clock: ScriptedClock) -> Any:
    return usage_service(store, clock)


def walk(svc: TokenUsageService, limit: int = 3, **kw) -> list[TokenUsageRecord]:
    out, cursor = [], None
    while True:
        page = svc.list(limit=limit, cursor=cursor, **kw)
        assert len(page.items) <= limit
        out += page.items
        if page.next_cursor is None:
            return out
        assert page.items, "a cursor is issued only when more items follow"
        cursor = page.next_cursor


def order(records: list[TokenUsageRecord]) -> list[TokenUsageRecord]:
    return sorted(records, key=lambda r: (r.created_at, int(r.token_usage_record_id)))


# -- recording ------------------------------------------------------------------------------------
def test_record_fields_and_json(svc: TokenUsageService, clock: ScriptedClock) -> None:
    clock.now = T0 + dt.timedelta(microseconds=123_456)  # stored to the millisecond
    r = svc.record({"agentId": "run-1", "role": "user", "tokenCount": 12, "cost": 0.25,
                    "llmModel": "gpt-4o"})
    assert codec.to_json(r) == {
        "tokenUsageRecordId": "1", "agentId": "run-1", "role": "user", "tokenCount": 12,
        "cost": 0.25, "llmModel": "gpt-4o", "createdAt": "2026-03-01T00:00:00.123Z",
    }
    r2 = svc.record({"agentId": "run-1", "role": "ASSISTANT", "tokenCount": 0, "llmModel": " "})
    assert (r2.token_usage_record_id, r2.role, r2.cost, r2.llm_model) == ("2", "assistant", 0.0,
                                                                          None)
    assert svc.get("2") == r2
    assert codec.from_bytes(codec.to_bytes(r2)) == r2
    with pytest.raises(NotFoundError):
        svc.get("3")


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"agentId": None}, "agentId", "VALIDATION_ERROR"),
        ({"agentId": "  "}, "agentId", "VALIDATION_ERROR"),
        ({"role": "system"}, "role", "VALIDATION_ERROR"),
        ({"role": None}, "role", "VALIDATION_ERROR"),
        ({"tokenCount": -1}, "tokenCount", "VALIDATION_ERROR"),
        ({"tokenCount": 1.5}, "tokenCount", "VALIDATION_ERROR"),
        ({"tokenCount": True}, "tokenCount", "VALIDATION_ERROR"),
        ({"tokenCount": "3"}, "tokenCount", "VALIDATION_ERROR"),
        ({"tokenCount": None}, "tokenCount", "VALIDATION_ERROR"),
        ({"cost": -0.01}, "cost", "VALIDATION_ERROR"),
        ({"cost": "1"}, "cost", "VALIDATION_ERROR"),
        ({"cost": float("nan")}, "cost", "VALIDATION_ERROR"),
        ({"cost": float("inf")}, "cost", "VALIDATION_ERROR"),
        ({"llmModel": 4}, "llmModel", "VALIDATION_ERROR"),
        ({"llmModel": "m" * 201}, "llmModel", "VALIDATION_ERROR"),
        ({"createdAt": "2020-01-01"}, "createdAt", "UNKNOWN_FIELD"),
        ({"tokencount": 1}, "tokencount", "UNKNOWN_FIELD"),
    ],
)
def test_record_rejects(svc: TokenUsageService, change: dict, field: str, code: str) -> None:
    body = {"agentId": "a", "role": "user", "tokenCount": 1, "cost": 0.1, **change}
    if change.get("agentId", 1) is None:
        del body["agentId"]
    with pytest.raises(ValidationError) as exc:
        svc.record(body)
    assert (exc.value.field, exc.value.code) == (field, code)
    assert svc.list().items == []


def test_costs_add_up_exactly(svc: TokenUsageService, clock: ScriptedClock) -> None:
    for cost in (0.1, 0.2, 0.000000001, 3, 1e-10):  # 1e-10 rounds to 0 nano-units
        svc.record({"agentId": "a", "role": "user", "tokenCount": 1, "cost": cost})
    assert svc.total_cost() == 3.300000001
    assert svc.statistics()[0].prompt_cost_nanos == 3_300_000_001


def test_conversation_is_two_records_in_one_transaction(
    store: Store, clock: ScriptedClock
) -> None:
    counting = CountingStore(store)
    svc = usage_service(counting, clock)
    user, assistant = svc.record_conversation({
        "agentId": "run", "llmModel": "m", "promptTokens": 10, "completionTokens": 20,
        "promptCost": 0.01, "completionCost": 0.02,
    })
    assert counting.counts.write_txns == 1
    assert (user.role, user.token_count, user.cost) == ("user", 10, 0.01)
    assert (assistant.role, assistant.token_count, assistant.cost) == ("assistant", 20, 0.02)
    assert user.created_at == assistant.created_at
    assert int(assistant.token_usage_record_id) == int(user.token_usage_record_id) + 1
    assert [r.role for r in svc.list().items] == ["user", "assistant"]
    u2, a2 = svc.record_conversation({"agentId": "run", "promptTokens": 1, "completionTokens": 2})
    assert (u2.cost, a2.cost, u2.llm_model) == (0.0, 0.0, None)
    with pytest.raises(ValidationError) as exc:
        svc.record_conversation({"agentId": "run", "promptTokens": 1})
    assert exc.value.field == "completionTokens"


def test_conversation_failure_leaves_nothing(
    svc: TokenUsageService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = repository.insert
    calls = []

    def insert(txn, record):
        calls.append(record)
        if len(calls) == 2:
            raise RuntimeError("crash between the two records")
        real(txn, record)

    monkeypatch.setattr(repository, "insert", insert)
    with pytest.raises(RuntimeError):
        svc.record_conversation({"agentId": "a", "promptTokens": 1, "completionTokens": 2,
                                 "promptCost": 1.0})
    monkeypatch.setattr(repository, "insert", real)
    assert svc.list().items == [] and svc.statistics() == [] and svc.total_cost() == 0
    assert check(store, token_usage.collections()).ok
    # The aborted transaction's ids were not consumed either.
    assert svc.record({"agentId": "a", "role": "user", "tokenCount": 1}).token_usage_record_id \
        == "1"


# -- ranges, filters, pages ------------------------------------------------------------------------
def test_range_is_inclusive_at_both_ends(svc: TokenUsageService, clock: ScriptedClock) -> None:
    times = [T0 - MS, T0, T0 + HOUR, T0 + 2 * HOUR - MS, T0 + 2 * HOUR, T0 + 2 * HOUR + MS]
    for i, t in enumerate(times):
        clock.now = t
        svc.record({"agentId": "a", "role": "user", "tokenCount": i, "cost": 1})
    got = walk(svc, start=T0, end=T0 + 2 * HOUR)
    assert [r.token_count for r in got] == [1, 2, 3, 4]
    assert svc.total_cost(T0, T0 + 2 * HOUR) == 4.0
    assert svc.statistics(T0, T0 + 2 * HOUR)[0].prompt_tokens == 1 + 2 + 3 + 4
    # Text bounds: a bare date is midnight UTC; ISO with an offset.
    assert [r.token_count for r in walk(svc, start="2026-03-01", end="2026-03-01T02:00:00Z")] \
        == [1, 2, 3, 4]
    assert [r.token_count for r in walk(svc, start="2026-03-01T01:00:00+01:00", end=T0)] == [1]
    # Sub-millisecond bounds: the start rounds up, the end rounds down.
    assert [r.token_count for r in walk(svc, start=T0 + MS / 2, end=T0 + HOUR + MS / 2)] == [2]
    assert walk(svc, start=T0 + HOUR, end=T0) == []
    assert svc.statistics(T0 + HOUR, T0) == [] and svc.total_cost(T0 + HOUR, T0) == 0
    assert len(walk(svc)) == 6  # unbounded
    with pytest.raises(ValidationError) as exc:
        svc.list(start="yesterday")
    assert exc.value.field == "start"


def test_filters_and_pages(svc: TokenUsageService, clock: ScriptedClock) -> None:
    rng = random.Random(7)
    made = []
    for i in range(40):
        clock.now = T0 + rng.choice([0, 0, 1, 5, 1000]) * MS * i  # ties within a millisecond
        made.append(svc.record({
            "agentId": rng.choice(["a", "b", "c" * 200]), "role": rng.choice(["user", "assistant"]),
            "tokenCount": i, "llmModel": rng.choice(["m1", "m2", None]),
        }))
    lo, hi = min(r.created_at for r in made), max(r.created_at for r in made)
    for kw in ({}, {"llm_model": "m1"}, {"agent_id": "b"}, {"agent_id": "c" * 200},
               {"agent_id": "a", "llm_model": "m2"}, {"agent_id": "nobody"},
               {"start": lo + 3 * MS, "end": hi - 3 * MS, "agent_id": "a"}):
        expected = [
            r for r in order(made)
            if ("llm_model" not in kw or r.llm_model == kw["llm_model"])
            and ("agent_id" not in kw or r.agent_id == kw["agent_id"])
            and ("start" not in kw or kw["start"] <= r.created_at <= kw["end"])
        ]
        for limit in (1, 4, 1000):
            assert walk(svc, limit=limit, **kw) == expected, kw
    assert svc.records_of_agent("b").items == [r for r in order(made) if r.agent_id == "b"]
    with pytest.raises(ValidationError):
        svc.list(cursor="garbage")
    cursor = svc.list(limit=1, agent_id="a").next_cursor
    with pytest.raises(ValidationError):  # a cursor of another list
        svc.list(limit=1, cursor=cursor)


# -- statistics ------------------------------------------------------------------------------------
def brute_force(records: list[TokenUsageRecord], lo: dt.datetime, hi: dt.datetime) -> list[dict]:
    groups: dict[str, dict] = {}
    for r in order(records):
        if not lo <= r.created_at <= hi:
            continue
        g = groups.setdefault(r.group, {"llmModel": r.group, "promptTokens": 0, "pc": 0,
                                        "assistantTokens": 0, "ac": 0})
        if r.role == "user":
            g["promptTokens"] += r.token_count
            g["pc"] += r.cost_nanos
        else:
            g["assistantTokens"] += r.token_count
            g["ac"] += r.cost_nanos
    return [
        {"llmModel": g["llmModel"], "promptTokens": g["promptTokens"],
         "promptTokenCost": g["pc"] / 1e9, "assistantTokens": g["assistantTokens"],
         "assistantTokenCost": g["ac"] / 1e9, "totalCost": (g["pc"] + g["ac"]) / 1e9}
        for g in groups.values()
    ]


def random_usage(svc: TokenUsageService, clock: ScriptedClock, n: int, hours: int,
                 seed: int) -> list[TokenUsageRecord]:
    """n records over ``hours`` hours with clustered times (ties, hour edges) and models that
    first appear at different times, some in the same hour."""
    rng = random.Random(seed)
    models = ["gpt-4o", "claude", None, "unknown", "m" * 150, "llama"]
    total_ms = hours * 3_600_000
    times = sorted(rng.randrange(total_ms) for _ in range(n))
    # Put a few records exactly on hour boundaries and just before them.
    for i in range(0, n, max(1, n // 10)):
        h = rng.randrange(1, hours) * 3_600_000
        times[i] = h - rng.choice([0, 1])
    times.sort()
    out = []
    for i, ms in enumerate(times):
        clock.now = T0 + ms * MS
        cost = rng.choice([0, 0.1, 0.2, 0.3, 1.23456789, 1e-9, rng.random()])
        if i % 3 == 0:
            u, a = svc.record_conversation({
                "agentId": f"run-{rng.randrange(4)}", "llmModel": rng.choice(models),
                "promptTokens": rng.randrange(5000), "completionTokens": rng.randrange(5000),
                "promptCost": cost, "completionCost": rng.random(),
            })
            out += [u, a]
        else:
            out.append(svc.record({
                "agentId": f"run-{rng.randrange(4)}", "role": rng.choice(["user", "assistant"]),
                "tokenCount": rng.randrange(5000), "cost": cost,
                "llmModel": rng.choice(models[: 2 + i * 4 // n]),  # models appear over time
            }))
    return out


def ranges(records: list[TokenUsageRecord], hours: int, seed: int) -> Iterator[tuple]:
    rng = random.Random(seed)
    stamps = [r.created_at for r in records]
    yield T0, T0 + hours * HOUR
    yield T0 + HOUR, T0 + 3 * HOUR  # whole hours only, end exactly on an hour
    yield T0 + HOUR, T0 + 3 * HOUR - MS
    yield T0 + 90 * dt.timedelta(minutes=1), T0 + 100 * dt.timedelta(minutes=1)  # inside one hour
    yield T0 + 50 * dt.timedelta(minutes=1), T0 + 70 * dt.timedelta(minutes=1)  # two partials
    for _ in range(25):
        a, b = rng.choice(stamps), rng.choice(stamps)
        yield min(a, b), max(a, b)
        h = T0 + rng.randrange(hours) * HOUR
        yield h - rng.choice([0, 1]) * MS, rng.choice(stamps) + rng.choice([-1, 0, 1]) * MS
        x = T0 + rng.randrange(hours * 3_600_000) * MS
        yield x, x + rng.randrange(1, 20 * 3_600_000) * MS


def test_statistics_and_total_cost_match_brute_force(
    store: Store, svc: TokenUsageService, clock: ScriptedClock
) -> None:
    hours = 30
    records = random_usage(svc, clock, n=150, hours=hours, seed=11)
    assert order(walk(svc, limit=1000)) == order(records)
    for lo, hi in ranges(records, hours, seed=5):
        expected = brute_force(records, lo, hi)
        got = [codec.statistics_to_json(s) for s in svc.statistics(lo, hi)]
        assert got == expected, (format_timestamp(lo), format_timestamp(hi))
        exact = sum(r.cost_nanos for r in records if lo <= r.created_at <= hi)
        assert svc.total_cost_nanos(lo, hi) == exact
        assert svc.total_cost(lo, hi) == exact / 1e9
        assert sum(Decimal(repr(r.cost)) for r in records if lo <= r.created_at <= hi) \
            == Decimal(exact) / 10**9
        assert walk(svc, limit=50, start=lo, end=hi) == \
            [r for r in order(records) if lo <= r.created_at <= hi]
    assert check(store, token_usage.collections()).ok


def test_first_appearance_ties_within_an_hour(svc: TokenUsageService,
                                              clock: ScriptedClock) -> None:
    # Three models first appear in the same whole hour; their order is that of their first
    # record (createdAt, then id), not the order of their names.
    for minute, model in [(50, "zeta"), (10, "beta"), (30, None), (10, "alpha"), (59, "beta")]:
        clock.now = T0 + HOUR + minute * dt.timedelta(minutes=1)
        svc.record({"agentId": "a", "role": "user", "tokenCount": 1, "llmModel": model})
    clock.now = T0 + 2 * HOUR + 5 * MS
    svc.record({"agentId": "a", "role": "user", "tokenCount": 1, "llmModel": "unknown"})
    stats = svc.statistics(T0, T0 + 3 * HOUR)
    assert [s.llm_model for s in stats] == ["beta", "alpha", "unknown", "zeta"]
    assert [s.prompt_tokens for s in stats] == [2, 1, 2, 1]
    # Beginning mid-hour: the partial hour is read record by record.
    stats = svc.statistics(T0 + HOUR + 20 * dt.timedelta(minutes=1), T0 + 3 * HOUR)
    assert [s.llm_model for s in stats] == ["unknown", "zeta", "beta"]


def test_statistics_read_buckets_not_records(store: Store, clock: ScriptedClock) -> None:
    """The keys a statistic reads depend on the buckets and the edge hours' records only: adding
    many records inside the whole hours of the range does not change what it reads."""
    counting = CountingStore(store)
    svc = usage_service(counting, clock)
    rng = random.Random(3)
    models = ["a", "b", None]

    def add(n: int, first_hour: int, last_hour: int) -> None:
        # Written in one transaction per batch to keep the test fast on every backend.
        with store.begin(write=True) as txn:
            for _ in range(n):
                ms = rng.randrange(first_hour * 3_600_000, (last_hour + 1) * 3_600_000)
                record = TokenUsageRecord(
                    token_usage_record_id=repository.next_id(txn), agent_id="run",
                    role=rng.choice(["user", "assistant"]), token_count=rng.randrange(100),
                    cost_nanos=rng.randrange(10**6), llm_model=rng.choice(models),
                    created_at=T0 + ms * MS,
                )
                repository.insert(txn, record)

    add(300, 0, 11)  # 12 hours, ~25 records each
    lo = T0 + 2 * HOUR + 17 * dt.timedelta(minutes=1)
    hi = T0 + 9 * HOUR + 5 * dt.timedelta(minutes=1)
    all_records = walk(svc, limit=1000)
    edge = [r for r in all_records
            if lo <= r.created_at < T0 + 3 * HOUR or T0 + 9 * HOUR <= r.created_at <= hi]
    in_range = [r for r in all_records if lo <= r.created_at <= hi]

    def measure(fn) -> tuple[object, int]:
        counting.counts.reset()
        result = fn()
        return result, counting.counts.reads

    stats, reads = measure(lambda: svc.statistics(lo, hi))
    total, total_reads = measure(lambda: svc.total_cost_nanos(lo, hi))
    assert [codec.statistics_to_json(s) for s in stats] == brute_force(all_records, lo, hi)
    shards = repository.RECORDS.ROLLUP_SHARDS  # a bucket is split over its shards
    buckets = 6 * len(models) * shards  # hours 3..8
    # Edge records: one index key and one record read each; buckets: one key per shard; first
    # appearance: at most two index keys per group.
    assert total_reads <= 2 * len(edge) + buckets
    assert reads <= 2 * len(edge) + buckets + 2 * len(models) * 2
    assert reads < len(in_range)

    add(1500, 3, 8)  # many more records, all inside the whole hours of the range
    stats2, reads2 = measure(lambda: svc.statistics(lo, hi))
    total2, total_reads2 = measure(lambda: svc.total_cost_nanos(lo, hi))
    # More of each bucket's shards hold counts now; the bound, which does not depend on the
    # number of records, still holds.
    assert total_reads2 <= 2 * len(edge) + buckets
    assert reads2 <= 2 * len(edge) + buckets + 2 * len(models) * 2
    all_records = walk(svc, limit=1000)
    assert [codec.statistics_to_json(s) for s in stats2] == brute_force(all_records, lo, hi)
    assert total2 == sum(r.cost_nanos for r in all_records if lo <= r.created_at <= hi)
    assert total2 > total
    assert check(store, token_usage.collections()).ok


def test_record_list_reads_only_the_range(store: Store, clock: ScriptedClock) -> None:
    counting = CountingStore(store)
    svc = usage_service(counting, clock)
    for i in range(60):
        clock.now = T0 + i * dt.timedelta(minutes=1)
        svc.record({"agentId": "a", "role": "user", "tokenCount": i})
    counting.counts.reset()
    page = svc.list(T0 + 10 * dt.timedelta(minutes=1), T0 + 14 * dt.timedelta(minutes=1))
    assert [r.token_count for r in page.items] == [10, 11, 12, 13, 14]
    assert counting.counts.scanned == 5 and counting.counts.gets == 5


def test_concurrent_conversations_keep_roll_ups_exact(store: Store) -> None:
    svc = usage_service(store)  # the real clock: several writers in the same hours
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(8):
                svc.record_conversation({"agentId": f"run-{n}", "llmModel": f"m{i % 2}",
                                         "promptTokens": 1, "completionTokens": 2,
                                         "promptCost": 0.1, "completionCost": 0.2})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    records = walk(svc, limit=1000)
    assert len(records) == 64 and len({r.token_usage_record_id for r in records}) == 64
    assert svc.total_cost_nanos() == 32 * 300_000_000
    stats = {s.llm_model: s for s in svc.statistics()}
    assert {k: (s.prompt_tokens, s.assistant_tokens) for k, s in stats.items()} == {
        "m0": (16, 32), "m1": (16, 32)}
    assert check(store, token_usage.collections()).ok
