"""Two server processes on one PostgreSQL database, hit with concurrent conflicting writes
(issue 8): no lost update, no duplicate unique value, exactly-once ingress.

Every conflicting request is sent from several threads at once, split between the two processes
and released together by a barrier, so the writes really race inside PostgreSQL.
"""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scripts.serverproc import Client, ServerProcess, server_env
from tests.reliability.conftest import LONG

THREADS = 8
ROUNDS = 25 if LONG else 4
ROUTE = {"provider": "WHATSAPP", "transport": "BUSINESS_API", "accountId": "two-servers",
         "peerId": "peer-1"}


@pytest.fixture(scope="module")
def servers(pg_cluster: Any) -> Iterator[list[ServerProcess]]:
    url = pg_cluster.create_database(f"two_servers_{os.getpid()}")
    env = server_env("postgresql", None, url, AUTOBYTEUS_THREADS="8")
    started = [ServerProcess(env), ServerProcess(env)]
    try:
        for s in started:
            s.wait_ready()
        yield started
    finally:
        logs = []
        for s in started:
            s.stop()
            logs.append(s.text())
    assert all("Traceback" not in log for log in logs), logs


def race(servers: list[ServerProcess], fn: Callable[[Client, int], Any],
         n: int = THREADS) -> list[Any]:
    """Run ``fn(client, i)`` in ``n`` threads at once, alternating between the servers."""
    clients = [servers[i % len(servers)].client() for i in range(n)]
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    failures: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            results[i] = fn(clients[i], i)
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for c in clients:
        c.close()
    if failures:
        raise failures[0]
    return results


def test_same_agent_name_from_both_servers_one_wins(servers: list[ServerProcess]) -> None:
    c = servers[0].client()
    assert c.call("POST", "/rest/api/prompts", {"name": "sys", "category": "two",
                                                "promptContent": "p"})[0] == 201
    for r in range(ROUNDS):
        body = {"name": f"agent-{r}", "role": "r", "description": "d",
                "systemPromptCategory": "two", "systemPromptName": "sys"}
        statuses = race(servers, lambda cl, i, body=body: cl.call(
            "POST", "/rest/api/agent-definitions", body)[0])
        assert sorted(statuses) == [201] + [409] * (THREADS - 1), statuses
        # MCP PUT of one new serverId: created exactly once, replaced by the others
        statuses = race(servers, lambda cl, i, r=r: cl.call(
            "PUT", f"/rest/api/mcp-servers/s-{r}",
            {"transportType": "stdio", "command": "npx", "args": [str(i)]})[0])
        assert sorted(statuses) == [200] * (THREADS - 1) + [201], statuses
    agents = c.list_all("/rest/api/agent-definitions")
    assert len(agents) == ROUNDS and len({a["name"] for a in agents}) == ROUNDS
    c.close()


def test_concurrent_activations_and_revisions_leave_one_active_and_no_lost_version(
    servers: list[ServerProcess],
) -> None:
    c = servers[1].client()
    status, first = c.call("POST", "/rest/api/prompts", {"name": "fam", "category": "race",
                                                         "promptContent": "v1"})
    assert status == 201
    acked_revisions = 0
    for r in range(ROUNDS):
        # revisions from both servers at once: every one gets its own version
        results = race(servers, lambda cl, i, r=r: cl.call(
            "POST", f"/rest/api/prompts/{first['id']}/revisions",
            {"promptContent": f"r{r}-{i}"}))
        assert all(s == 201 for s, _ in results), results
        acked_revisions += len(results)
        family = c.list_all("/rest/api/prompts", name="fam", category="race")
        versions = sorted(p["version"] for p in family)
        assert versions == list(range(1, acked_revisions + 2)), versions
        # activations of different versions at once: exactly one active afterwards
        ids = [p["id"] for p in family]
        picks = random.sample(ids, THREADS)
        results = race(servers, lambda cl, i, picks=picks: cl.call(
            "POST", f"/rest/api/prompts/{picks[i]}/activate"))
        assert all(s == 200 and p["isActive"] for s, p in results), results
        active = [p["id"] for p in c.list_all("/rest/api/prompts", name="fam", category="race")
                  if p["isActive"]]
        assert len(active) == 1 and active[0] in picks, active
    c.close()


def test_if_match_patches_from_both_servers_lose_no_update(servers: list[ServerProcess]) -> None:
    c = servers[0].client()
    status, p = c.call("POST", "/rest/api/prompts", {"name": "etag", "category": "race",
                                                     "promptContent": "x"})
    assert status == 201
    url = f"/rest/api/prompts/{p['id']}"
    for r in range(ROUNDS):
        c.call("GET", url)
        etag = c.last_headers["etag"]
        results = race(servers, lambda cl, i, r=r, etag=etag: cl.call(
            "PATCH", url, {"description": f"r{r}-w{i}"}, {"If-Match": etag}))
        statuses = sorted(s for s, _ in results)
        assert statuses == [200] + [412] * (THREADS - 1), statuses
        winner = next(body for s, body in results if s == 200)
        status, now = c.call("GET", url)
        assert status == 200 and now["description"] == winner["description"]
    c.close()


def test_token_usage_totals_are_exact_under_concurrent_writes(
    servers: list[ServerProcess],
) -> None:
    per_thread = 40 if LONG else 10
    nano = 10**9

    def write(cl: Client, i: int) -> tuple[int, int, int]:
        tokens = cost = 0
        for n in range(per_thread):
            pc, cc = (i * 7 + n) % 11 * 1_000_000, (i + n) % 5 * 250_000
            status, recs = cl.call("POST", "/rest/api/token-usage/conversations", {
                "agentId": f"tu-{i}", "llmModel": "shared-model", "promptTokens": n + 1,
                "completionTokens": i + 1, "promptCost": pc / nano, "completionCost": cc / nano})
            assert status == 201, recs
            tokens += n + 1 + i + 1
            cost += pc + cc
        return tokens, cost, per_thread * 2

    results = race(servers, write)
    tokens = sum(r[0] for r in results)
    cost = sum(r[1] for r in results)
    count = sum(r[2] for r in results)
    c = servers[1].client()
    status, total = c.call("GET", "/rest/api/token-usage/total-cost?start=2000-01-01")
    assert status == 200 and round(total["totalCost"] * nano) == cost, (total, cost / nano)
    status, stats = c.call("GET", "/rest/api/token-usage/statistics?start=2000-01-01")
    row = next(s for s in stats if s["llmModel"] == "shared-model")
    assert row["promptTokens"] + row["assistantTokens"] == tokens
    assert round(row["totalCost"] * nano) == cost
    records = c.list_all("/rest/api/token-usage/records", start="2000-01-01",
                         llmModel="shared-model")
    assert len(records) == count
    assert Counter(r["agentId"] for r in records) == {
        f"tu-{i}": per_thread * 2 for i in range(THREADS)}
    c.close()


def test_the_same_message_to_both_servers_is_ingested_exactly_once(
    servers: list[ServerProcess],
) -> None:
    c = servers[0].client()
    status, _ = c.call("PUT", "/rest/api/channel-bindings",
                       {**ROUTE, "targetType": "AGENT", "agentId": "agent-two"})
    assert status in (200, 201)
    messages = 5 * ROUNDS
    for m in range(messages):
        envelope = {**ROUTE, "peerType": "USER", "externalMessageId": f"msg-{m}",
                    "content": f"hello {m}", "receivedAt": "2026-02-22T10:15:30.123Z"}
        results = race(servers, lambda cl, i, envelope=envelope: cl.call(
            "POST", "/rest/api/channel-ingress/v1/messages", envelope))
        assert all(s == 202 for s, _ in results), results
        dispositions = sorted(a["disposition"] for _, a in results)
        assert dispositions == ["DUPLICATE"] * (THREADS - 1) + ["ROUTED"], dispositions
    inbox = c.list_all("/rest/api/channel-inbox/AGENT/agent-two")
    ids = [m["externalSource"]["externalMessageId"] for m in inbox]
    assert sorted(ids) == sorted(f"msg-{m}" for m in range(messages))
    c.close()
