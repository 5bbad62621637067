"""Token usage over HTTP (api.md "Token usage", domains.md 5), lmdb store, an injected clock."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any
from urllib.parse import parse_qs, urlsplit

import falcon.testing
import pytest

from tests.web.api_support import (
    ManualClock,
    assert_error,
    assert_timestamps,
    first_page,
    iso,
    make_api,
    raw_post,
    walk,
)

USAGE = "/rest/api/token-usage"
RECORDS = USAGE + "/records"
CONVERSATIONS = USAGE + "/conversations"
TOTAL = USAGE + "/total-cost"
STATS = USAGE + "/statistics"
RECORD_FIELDS = ["tokenUsageRecordId", "agentId", "role", "tokenCount", "cost", "llmModel",
                 "createdAt"]
STAT_FIELDS = {"llmModel", "promptTokens", "promptTokenCost", "assistantTokens",
               "assistantTokenCost", "totalCost"}
DAY = dt.datetime(2026, 2, 22, tzinfo=dt.UTC)
MS = dt.timedelta(milliseconds=1)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def api(make_store: Any, clock: ManualClock) -> falcon.testing.TestClient:
    return make_api(make_store, clock)


def record(api: falcon.testing.TestClient, clock: ManualClock, when: dt.datetime | None = None,
           **fields: Any) -> dict[str, Any]:
    if when is not None:
        clock.set(when)
    body = {"agentId": "run-1", "role": "user", "tokenCount": 10, **fields}
    result = api.simulate_post(RECORDS, json=body)
    assert result.status_code == 201, result.text
    return result.json


# -- writes ---------------------------------------------------------------------------------------
def test_post_record_answers_201_and_the_record(api: falcon.testing.TestClient,
                                                clock: ManualClock) -> None:
    result = api.simulate_post(RECORDS, json={"agentId": "run-1", "role": "assistant",
                                              "tokenCount": 42, "cost": 0.0125,
                                              "llmModel": "gpt-4"})
    assert result.status_code == 201, result.text
    body = result.json
    assert list(body) == RECORD_FIELDS
    assert body == {"tokenUsageRecordId": "1", "agentId": "run-1", "role": "assistant",
                    "tokenCount": 42, "cost": 0.0125, "llmModel": "gpt-4",
                    "createdAt": iso(clock.now)}
    assert_timestamps(body, "createdAt")
    location = result.headers["location"]
    assert urlsplit(location).path == RECORDS
    assert parse_qs(urlsplit(location).query) == {"agentId": ["run-1"]}
    # defaults: cost 0, no model
    bare = api.simulate_post(RECORDS, json={"agentId": "run-1", "role": "user",
                                            "tokenCount": 0})
    assert bare.status_code == 201
    assert (bare.json["cost"], bare.json["llmModel"], bare.json["tokenUsageRecordId"]) == (
        0.0, None, "2")
    assert isinstance(bare.json["cost"], float)


def test_location_of_a_record_finds_it_whatever_the_agent_id(
    api: falcon.testing.TestClient,
) -> None:
    agent = "run&x=1#frag ü"
    result = api.simulate_post(RECORDS, json={"agentId": agent, "role": "user",
                                              "tokenCount": 1})
    assert result.status_code == 201
    parts = urlsplit(result.headers["location"])
    assert parts.path == RECORDS and not parts.fragment
    assert parse_qs(parts.query) == {"agentId": [agent]}
    found = first_page(api, RECORDS, {"agentId": agent})
    assert found == [result.json]


def test_post_conversation_writes_the_user_and_assistant_records(
    api: falcon.testing.TestClient, clock: ManualClock
) -> None:
    result = api.simulate_post(CONVERSATIONS, json={
        "agentId": "run-7", "llmModel": "claude", "promptTokens": 100, "completionTokens": 20,
        "promptCost": 0.5, "completionCost": 0.25})
    assert result.status_code == 201, result.text
    assert result.headers.get("location")
    user, assistant = result.json
    assert list(user) == RECORD_FIELDS and list(assistant) == RECORD_FIELDS
    assert user == {"tokenUsageRecordId": "1", "agentId": "run-7", "role": "user",
                    "tokenCount": 100, "cost": 0.5, "llmModel": "claude",
                    "createdAt": iso(clock.now)}
    assert assistant == {"tokenUsageRecordId": "2", "agentId": "run-7", "role": "assistant",
                         "tokenCount": 20, "cost": 0.25, "llmModel": "claude",
                         "createdAt": iso(clock.now)}
    assert first_page(api, RECORDS, {"agentId": "run-7"}) == [user, assistant]
    clock.tick()
    plain = api.simulate_post(CONVERSATIONS, json={"agentId": "run-7", "promptTokens": 1,
                                                   "completionTokens": 2})
    assert plain.status_code == 201
    assert [(r["cost"], r["llmModel"]) for r in plain.json] == [(0.0, None), (0.0, None)]


@pytest.mark.parametrize("path,body,field", [
    (RECORDS, {"role": "user", "tokenCount": 1}, "agentId"),
    (RECORDS, {"agentId": " ", "role": "user", "tokenCount": 1}, "agentId"),
    (RECORDS, {"agentId": "a", "tokenCount": 1}, "role"),
    (RECORDS, {"agentId": "a", "role": "system", "tokenCount": 1}, "role"),
    (RECORDS, {"agentId": "a", "role": "user"}, "tokenCount"),
    (RECORDS, {"agentId": "a", "role": "user", "tokenCount": -1}, "tokenCount"),
    (RECORDS, {"agentId": "a", "role": "user", "tokenCount": 1.5}, "tokenCount"),
    (RECORDS, {"agentId": "a", "role": "user", "tokenCount": "10"}, "tokenCount"),
    (RECORDS, {"agentId": "a", "role": "user", "tokenCount": True}, "tokenCount"),
    (RECORDS, {"agentId": "a", "role": "user", "tokenCount": 10**30}, "tokenCount"),
    (RECORDS, {"agentId": "a", "role": "user", "tokenCount": 1, "cost": -0.01}, "cost"),
    (RECORDS, {"agentId": "a", "role": "user", "tokenCount": 1, "cost": "1"}, "cost"),
    (RECORDS, {"agentId": "a", "role": "user", "tokenCount": 1, "cost": 1e300}, "cost"),
    (RECORDS, {"agentId": "a", "role": "user", "tokenCount": 1, "llmModel": 4}, "llmModel"),
    (RECORDS, {"agentId": "a", "role": "user", "tokenCount": 1, "model": "x"}, "model"),
    (CONVERSATIONS, {"agentId": "a", "completionTokens": 1}, "promptTokens"),
    (CONVERSATIONS, {"agentId": "a", "promptTokens": 1}, "completionTokens"),
    (CONVERSATIONS, {"agentId": "a", "promptTokens": -1, "completionTokens": 1},
     "promptTokens"),
    (CONVERSATIONS, {"agentId": "a", "promptTokens": 1, "completionTokens": 1,
                     "completionCost": -1}, "completionCost"),
    (CONVERSATIONS, {"agentId": "a", "promptTokens": 1, "completionTokens": 1,
                     "promptCost": [1]}, "promptCost"),
    (CONVERSATIONS, {"promptTokens": 1, "completionTokens": 1}, "agentId"),
    (CONVERSATIONS, {"agentId": "a", "promptTokens": 1, "completionTokens": 1, "role": "user"},
     "role"),
])
def test_invalid_writes_are_400_naming_the_field_and_write_nothing(
    api: falcon.testing.TestClient, path: str, body: dict, field: str
) -> None:
    assert_error(api.simulate_post(path, json=body), 400, field=field)
    assert first_page(api, RECORDS) == []


def test_huge_and_infinite_numbers_are_400(api: falcon.testing.TestClient) -> None:
    for name, literal in (("tokenCount", b"1" + b"0" * 400), ("cost", b"1" + b"0" * 400),
                          ("cost", b"1e400"), ("cost", b"-1e400")):
        fields = {"tokenCount": b"1", name: literal}
        body = (b'{"agentId":"a","role":"user","tokenCount":' + fields["tokenCount"]
                + (b',"cost":' + fields["cost"] if "cost" in fields else b"") + b"}")
        assert_error(raw_post(api, "POST", RECORDS, body), 400, field=name)
    assert first_page(api, RECORDS) == []


# -- range queries --------------------------------------------------------------------------------
@pytest.fixture
def edges(api: falcon.testing.TestClient, clock: ManualClock) -> dict[str, dict]:
    """Records at the edges of 2026-02-22 (inserted out of time order on purpose)."""
    at = {
        "r4": DAY + dt.timedelta(hours=10, minutes=15, seconds=30, milliseconds=123),
        "r1": DAY - MS,
        "r3": DAY + MS,
        "r2": DAY,
        "r6": DAY + dt.timedelta(days=1) + MS,
        "r5": DAY + dt.timedelta(days=1),
    }
    models = {"r1": "a", "r2": None, "r3": "b", "r4": "a", "r5": "b", "r6": "a"}
    roles = {"r1": "user", "r2": "user", "r3": "assistant", "r4": "assistant", "r5": "user",
             "r6": "assistant"}
    costs = {"r1": 1.0, "r2": 0.5, "r3": 0.25, "r4": 0.125, "r5": 2.0, "r6": 4.0}
    out = {}
    for name, when in at.items():
        out[name] = record(api, clock, when, llmModel=models[name], role=roles[name],
                           cost=costs[name], agentId="run-2" if name == "r4" else "run-1",
                           tokenCount=int(name[1]) * 10)
    return out


def names(items: list[dict], edges: dict[str, dict]) -> list[str]:
    by_id = {r["tokenUsageRecordId"]: n for n, r in edges.items()}
    return [by_id[i["tokenUsageRecordId"]] for i in items]


@pytest.mark.parametrize("params,expected", [
    ({}, ["r1", "r2", "r3", "r4", "r5", "r6"]),
    ({"start": "2026-02-22", "end": "2026-02-23"}, ["r2", "r3", "r4", "r5"]),
    ({"start": "2026-02-22"}, ["r2", "r3", "r4", "r5", "r6"]),
    ({"end": "2026-02-22"}, ["r1", "r2"]),
    ({"start": "2026-02-22T00:00:00.001Z", "end": "2026-02-22T10:15:30.123Z"}, ["r3", "r4"]),
    ({"start": "2026-02-22T10:15:30.123Z", "end": "2026-02-22T10:15:30.123Z"}, ["r4"]),
    ({"start": "2026-02-22T10:15:30.124Z", "end": "2026-02-22T23:59:59.999Z"}, []),
    ({"start": "2026-02-22T01:00:00.001+01:00", "end": "2026-02-22T05:15:30.123-05:00"},
     ["r3", "r4"]),
    ({"start": "2026-02-21T23:59:59.999Z", "end": "2026-02-22T00:00:00Z"}, ["r1", "r2"]),
    ({"start": "2026-02-23", "end": "2026-02-22"}, []),
    ({"llmModel": "a"}, ["r1", "r4", "r6"]),
    ({"llmModel": "a", "start": "2026-02-22", "end": "2026-02-23"}, ["r4"]),
    ({"llmModel": "nope"}, []),
    ({"agentId": "run-2"}, ["r4"]),
    ({"agentId": "run-1", "llmModel": "b"}, ["r3", "r5"]),
    ({"agentId": "run-1", "start": "2026-02-22", "end": "2026-02-23"}, ["r2", "r3", "r5"]),
])
def test_records_in_an_inclusive_range_by_created_at(
    api: falcon.testing.TestClient, edges: dict[str, dict], params: dict, expected: list[str]
) -> None:
    items = first_page(api, RECORDS, params)
    assert names(items, edges) == expected
    assert all(list(i) == RECORD_FIELDS for i in items)
    for limit in (1, 2, 5):
        walked, pages = walk(api, RECORDS, limit, params)
        assert walked == items
        assert pages == max(1, -(-len(expected) // limit))


@pytest.mark.parametrize("params,expected", [
    ({}, 7.875), ({"start": "2026-02-22", "end": "2026-02-23"}, 2.875),
    ({"start": "2026-02-22T00:00:00.000Z", "end": "2026-02-22T00:00:00.000Z"}, 0.5),
    ({"end": "2026-02-21T23:59:59.999Z"}, 1.0), ({"start": "2027-01-01"}, 0.0),
])
def test_total_cost_over_an_inclusive_range(
    api: falcon.testing.TestClient, edges: dict, params: dict, expected: float
) -> None:
    result = api.simulate_get(TOTAL, params=params)
    assert result.status_code == 200
    assert result.json == {"totalCost": expected}


def test_statistics_per_model_with_unknown_in_order_of_first_appearance(
    api: falcon.testing.TestClient, edges: dict
) -> None:
    result = api.simulate_get(STATS, params={"start": "2026-02-22", "end": "2026-02-23"})
    assert result.status_code == 200
    # first appearances: r2 (no model) at midnight, r3 (b) 1 ms later, r4 (a) later on
    assert result.json == [
        {"llmModel": "unknown", "promptTokens": 20, "promptTokenCost": 0.5,
         "assistantTokens": 0, "assistantTokenCost": 0.0, "totalCost": 0.5},
        {"llmModel": "b", "promptTokens": 50, "promptTokenCost": 2.0,
         "assistantTokens": 30, "assistantTokenCost": 0.25, "totalCost": 2.25},
        {"llmModel": "a", "promptTokens": 0, "promptTokenCost": 0.0,
         "assistantTokens": 40, "assistantTokenCost": 0.125, "totalCost": 0.125},
    ]
    everything = api.simulate_get(STATS).json
    assert [s["llmModel"] for s in everything] == ["a", "unknown", "b"]
    assert everything[0]["promptTokens"] == 10 and everything[0]["assistantTokens"] == 100
    assert api.simulate_get(STATS, params={"start": "2030-01-01"}).json == []


@pytest.mark.parametrize("path", [RECORDS, TOTAL, STATS])
@pytest.mark.parametrize("name,value", [
    ("start", "yesterday"), ("end", "2026-02-30"), ("start", "2026-13-01"),
    ("end", "2026-02-22T25:00:00Z"), ("start", "2026-02-22T10:00:00+99:00"),
    ("start", "9" * 40), ("end", "2026-02-22T10:00:00Zjunk"),
])
def test_bad_range_parameters_are_400(api: falcon.testing.TestClient, path: str, name: str,
                                      value: str) -> None:
    assert_error(api.simulate_get(path, params={name: value}), 400, field=name)


def test_statistics_and_totals_match_the_records_over_many_ranges(
    api: falcon.testing.TestClient, clock: ManualClock
) -> None:
    """Records over several hours (exact hour edges included) and ranges that cut hours in
    partial pieces: every answer equals a sum over the records themselves."""
    rng = random.Random(7)
    base = DAY + dt.timedelta(hours=3)
    offsets = sorted({0, 1, 3_599_999, 3_600_000, 3_600_001, 7_200_000, 10_799_999}
                     | {rng.randrange(0, 5 * 3_600_000) for _ in range(40)})
    models = ["m1", None, "m2", "m3", "unknown"]
    made: list[dict[str, Any]] = []
    for off in offsets:
        cost = rng.randrange(0, 5000) / 1000
        role = rng.choice(["user", "assistant"])
        made.append(record(api, clock, base + off * MS, role=role, cost=cost,
                           llmModel=rng.choice(models), tokenCount=rng.randrange(0, 500)))
    points = [None, *(base + o * MS for o in (0, 1, 1_800_000, 3_599_999, 3_600_000,
                                             5_400_001, 7_200_000, 18_000_000))]
    for lo in points:
        for hi in points:
            params = {}
            if lo is not None:
                params["start"] = iso(lo)
            if hi is not None:
                params["end"] = iso(hi)
            inside = [r for r in made if (lo is None or r["createdAt"] >= iso(lo))
                      and (hi is None or r["createdAt"] <= iso(hi))]
            expected: dict[str, dict[str, Any]] = {}
            for r in inside:  # made is in time order: dict order is first appearance
                group = expected.setdefault(r["llmModel"] or "unknown", {
                    "promptTokens": 0, "promptTokenCost": 0.0, "assistantTokens": 0,
                    "assistantTokenCost": 0.0})
                if r["role"] == "user":
                    group["promptTokens"] += r["tokenCount"]
                    group["promptTokenCost"] += r["cost"]
                else:
                    group["assistantTokens"] += r["tokenCount"]
                    group["assistantTokenCost"] += r["cost"]
            stats = api.simulate_get(STATS, params=params)
            assert stats.status_code == 200
            assert [s["llmModel"] for s in stats.json] == list(expected), params
            for s in stats.json:
                assert set(s) == STAT_FIELDS
                want = expected[s["llmModel"]]
                assert s["promptTokens"] == want["promptTokens"]
                assert s["assistantTokens"] == want["assistantTokens"]
                assert s["promptTokenCost"] == pytest.approx(want["promptTokenCost"], abs=1e-9)
                assert s["assistantTokenCost"] == pytest.approx(want["assistantTokenCost"],
                                                                abs=1e-9)
                assert s["totalCost"] == pytest.approx(
                    want["promptTokenCost"] + want["assistantTokenCost"], abs=1e-9)
            total = api.simulate_get(TOTAL, params=params).json["totalCost"]
            assert total == pytest.approx(sum(r["cost"] for r in inside), abs=1e-9)
            listed = first_page(api, RECORDS, dict(params, limit="1000"))
            assert [r["tokenUsageRecordId"] for r in listed] == [
                r["tokenUsageRecordId"] for r in inside]
