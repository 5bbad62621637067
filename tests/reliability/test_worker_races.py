"""Four worker processes of one server (``--workers 4``) on one PostgreSQL database, four on one
LMDB store and four on one SQLite file, hit with conflicting writes (issue 15): exactly one
winner of a unique name, no lost If-Match update, one active prompt, exact usage totals, one
ROUTED among 64 copies of one ingress message, and every reply sent to the gateway exactly once
although four outbox workers poll the same outbox.

Each race is sent from many connections at once, released together by a barrier; the kernel
hands each connection to one of the four workers, and the test checks (from /proc) that the
connections of the races really were spread over several processes.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.serverproc import Client, GatewayStub, ServerProcess, server_env
from tests.reliability.conftest import LONG

WORKERS = 4
THREADS = 16
DUPLICATES = 64
ROUNDS = 12 if LONG else 3
ROUTE = {"provider": "WHATSAPP", "transport": "BUSINESS_API", "accountId": "workers",
         "peerId": "peer-1"}


class Pool:
    """The server under test, its gateway stub, and which workers served the races."""

    def __init__(self, server: ServerProcess, gateway: GatewayStub) -> None:
        self.server = server
        self.gateway = gateway
        self.port = int(server.wait_ready().rsplit(":", 1)[1])
        self.served_by: Counter[int] = Counter()

    def note_connections(self) -> None:
        """Count, per worker, the connections to our port it holds now."""
        inodes = _established_inodes(self.port)
        for pid in self.server.workers():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    self.served_by[pid] += 1


def _established_inodes(port: int) -> set[str]:
    """Socket inodes of established TCP connections whose local port is ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01":
                found.add(cols[9])
    return found


@pytest.fixture(scope="module", params=["postgresql", "lmdb", "sqlite"])
def pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Pool]:
    provider = request.param
    url = None
    data_dir: Path | None = None
    if provider == "postgresql":
        url = request.getfixturevalue("pg_cluster").create_database(f"workers_{os.getpid()}")
    else:
        data_dir = tmp_path_factory.mktemp("workers-lmdb")
    gateway = GatewayStub()
    env = server_env(provider, data_dir, url, AUTOBYTEUS_WORKERS=str(WORKERS),
                     AUTOBYTEUS_THREADS="8", AUTOBYTEUS_MAX_INFLIGHT="1000",
                     CHANNEL_CALLBACK_BASE_URL=gateway.base_url)
    server = ServerProcess.start(env)
    try:
        yield Pool(server, gateway)
        code = server.stop()
    finally:
        server.kill()
        gateway.close()
    log = server.text()
    assert code == 0 and "Traceback" not in log, log[-4000:]
    assert log.count("stopped; the store is closed") == WORKERS, log[-4000:]


def race(pool: Pool, fn: Callable[[Client, int], Any], n: int = THREADS) -> list[Any]:
    """Run ``fn(client, i)`` on ``n`` connections at once (each opened before the barrier)."""
    clients = [pool.server.client() for _ in range(n)]
    for c in clients:
        assert c.call("GET", "/health")[0] == 200  # connected: the kernel chose its worker
    pool.note_connections()
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    failures: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(60)
            results[i] = fn(clients[i], i)
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for c in clients:
        c.close()
    if failures:
        raise failures[0]
    return results


def test_unique_names_have_exactly_one_winner(pool: Pool) -> None:
    c = pool.server.client()
    assert c.call("POST", "/rest/api/prompts", {"name": "sys", "category": "uniq",
                                                "promptContent": "p"})[0] == 201
    for r in range(ROUNDS):
        body = {"name": f"agent-{r}", "role": "r", "description": "d",
                "systemPromptCategory": "uniq", "systemPromptName": "sys"}
        statuses = race(pool, lambda cl, i, body=body: cl.call(
            "POST", "/rest/api/agent-definitions", body)[0])
        assert sorted(statuses) == [201] + [409] * (THREADS - 1), statuses
        statuses = race(pool, lambda cl, i, r=r: cl.call(
            "PUT", f"/rest/api/mcp-servers/s-{r}",
            {"transportType": "stdio", "command": "npx", "args": [str(i)]})[0])
        assert sorted(statuses) == [200] * (THREADS - 1) + [201], statuses
    agents = c.list_all("/rest/api/agent-definitions")
    assert sorted(a["name"] for a in agents) == sorted(f"agent-{r}" for r in range(ROUNDS))
    c.close()


def test_if_match_updates_lose_nothing(pool: Pool) -> None:
    c = pool.server.client()
    status, p = c.call("POST", "/rest/api/prompts", {"name": "etag", "category": "race",
                                                     "promptContent": "x"})
    assert status == 201
    url = f"/rest/api/prompts/{p['id']}"
    for r in range(ROUNDS):
        c.call("GET", url)
        etag = c.last_headers["etag"]
        results = race(pool, lambda cl, i, r=r, etag=etag: cl.call(
            "PATCH", url, {"description": f"r{r}-w{i}"}, {"If-Match": etag}))
        assert sorted(s for s, _ in results) == [200] + [412] * (THREADS - 1), results
        winner = next(body for s, body in results if s == 200)
        status, now = c.call("GET", url)
        assert status == 200 and now["description"] == winner["description"]
    c.close()


def test_revisions_and_activations_keep_every_version_and_one_active(pool: Pool) -> None:
    c = pool.server.client()
    status, first = c.call("POST", "/rest/api/prompts", {"name": "fam", "category": "act",
                                                         "promptContent": "v1"})
    assert status == 201
    acked = 0
    for r in range(ROUNDS):
        results = race(pool, lambda cl, i, r=r: cl.call(
            "POST", f"/rest/api/prompts/{first['id']}/revisions",
            {"promptContent": f"r{r}-{i}"}))
        assert all(s == 201 for s, _ in results), results
        acked += len(results)
        family = c.list_all("/rest/api/prompts", name="fam", category="act")
        assert sorted(p["version"] for p in family) == list(range(1, acked + 2))
        picks = random.sample([p["id"] for p in family], THREADS)
        results = race(pool, lambda cl, i, picks=picks: cl.call(
            "POST", f"/rest/api/prompts/{picks[i]}/activate"))
        assert all(s == 200 and p["isActive"] for s, p in results), results
        active = [p["id"] for p in c.list_all("/rest/api/prompts", name="fam", category="act")
                  if p["isActive"]]
        assert len(active) == 1 and active[0] in picks, active
    c.close()


def test_usage_totals_are_exact(pool: Pool) -> None:
    per_thread = 30 if LONG else 8
    nano = 10**9

    def write(cl: Client, i: int) -> tuple[int, int]:
        tokens = cost = 0
        for n in range(per_thread):
            pc, cc = (i * 7 + n) % 11 * 1_000_000, (i + n) % 5 * 250_000
            status, recs = cl.call("POST", "/rest/api/token-usage/conversations", {
                "agentId": f"tu-{i}", "llmModel": "workers-model", "promptTokens": n + 1,
                "completionTokens": i + 1, "promptCost": pc / nano, "completionCost": cc / nano})
            assert status == 201, recs
            tokens += n + 1 + i + 1
            cost += pc + cc
        return tokens, cost

    results = race(pool, write)
    tokens, cost = sum(r[0] for r in results), sum(r[1] for r in results)
    c = pool.server.client()
    status, total = c.call("GET", "/rest/api/token-usage/total-cost?start=2000-01-01")
    assert status == 200 and round(total["totalCost"] * nano) == cost, (total, cost / nano)
    status, stats = c.call("GET", "/rest/api/token-usage/statistics?start=2000-01-01")
    row = next(s for s in stats if s["llmModel"] == "workers-model")
    assert row["promptTokens"] + row["assistantTokens"] == tokens
    assert round(row["totalCost"] * nano) == cost
    records = c.list_all("/rest/api/token-usage/records", start="2000-01-01",
                         llmModel="workers-model")
    assert Counter(r["agentId"] for r in records) == {
        f"tu-{i}": per_thread * 2 for i in range(THREADS)}
    c.close()


def test_64_copies_of_one_message_route_once_and_each_reply_is_sent_once(pool: Pool) -> None:
    c = pool.server.client()
    status, _ = c.call("PUT", "/rest/api/channel-bindings",
                       {**ROUTE, "targetType": "AGENT", "agentId": "agent-w"})
    assert status in (200, 201)
    messages = 2 * ROUNDS
    for m in range(messages):
        envelope = {**ROUTE, "peerType": "USER", "externalMessageId": f"msg-{m}",
                    "content": f"hello {m}", "receivedAt": "2026-02-22T10:15:30.123Z"}
        results = race(pool, lambda cl, i, envelope=envelope: cl.call(
            "POST", "/rest/api/channel-ingress/v1/messages", envelope), n=DUPLICATES)
        assert all(s == 202 for s, _ in results), results
        dispositions = Counter(a["disposition"] for _, a in results)
        assert dispositions == {"ROUTED": 1, "DUPLICATE": DUPLICATES - 1}, dispositions
    inbox = c.list_all("/rest/api/channel-inbox/AGENT/agent-w")
    assert sorted(m["externalSource"]["externalMessageId"] for m in inbox) == sorted(
        f"msg-{m}" for m in range(messages))

    # Replies queued from every worker at once; four outbox workers poll the one outbox.
    def reply(cl: Client, i: int) -> str:
        mid, turn = f"for-reply-{i}", f"turn-{i}"
        status, a = cl.call("POST", "/rest/api/channel-ingress/v1/messages", {
            **ROUTE, "peerType": "USER", "externalMessageId": mid, "content": "q",
            "receivedAt": "2026-02-22T10:15:30.123Z"})
        assert status == 202 and a["disposition"] == "ROUTED", a
        status, r = cl.call("POST", "/rest/api/channel-receipts/turns", {
            **ROUTE, "externalMessageId": mid, "turnId": turn, "agentId": "agent-w"})
        assert status == 200, r
        status, r = cl.call("POST", "/rest/api/channel-replies",
                            {"agentId": "agent-w", "turnId": turn, "replyText": f"re {i}"})
        assert status == 202 and r["published"], r
        return str(r["callbackIdempotencyKey"])

    keys = race(pool, reply)
    assert len(set(keys)) == THREADS
    deadline = time.monotonic() + 120  # ends a hung test only; nothing timed is asserted
    while not set(keys) <= pool.gateway.keys() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(keys) <= pool.gateway.keys()
    # The gateway has every reply; the worker that sent one records SENT only once the
    # gateway's answer is back, so the last of them may still be DISPATCHING for a moment.
    outbox = c.list_all("/rest/api/channel-outbox")
    while any(e["status"] != "SENT" for e in outbox) and time.monotonic() < deadline:
        time.sleep(0.1)
        outbox = c.list_all("/rest/api/channel-outbox")
    # Leased once each (an attempt is counted at the lease, and a SENT entry is never leased
    # again), so no worker sent any of them a second time.
    assert Counter(e["status"] for e in outbox) == {"SENT": THREADS}
    assert all(e["attempts"] == 1 for e in outbox), outbox
    assert pool.gateway.copies == len(pool.gateway.keys()) == THREADS, pool.gateway.copies
    c.close()


def test_the_races_were_served_by_several_processes(pool: Pool) -> None:
    # Runs last in its module (pytest keeps file order): after every race above.
    assert len(pool.server.workers()) == WORKERS
    assert len(pool.served_by) >= 2, pool.served_by
