"""Crash torture at the HTTP level: SIGKILL the real server at random moments, restart it, and
prove that nothing acknowledged was lost and nothing half-done is visible.

    python -m scripts.torture --provider all --kills 200          # the long form (every provider)
    python -m scripts.torture --provider lmdb --kills 20 --seed 7 --workers 4

Each round: start ``python -m web --port 0`` on the store; verify the store against the ledger
(below); let a few client threads write to every domain for a random time; SIGKILL the server in
the middle of that; run the index consistency check on the store the crash left. The server runs
``--workers 2`` (``--workers N``; ``file`` is served by one process only): a kill is of the whole
process group, parent and workers at once; in the first round and then about half of them one
worker alone is SIGKILLed first, while the clients write: the parent starts another, the clients
whose connection died carry on through new connections, and the whole group is killed later.
About one round in ten kills the server while it is still starting (opening the store). At the
end the server is restarted once more, verified, the outbox is drained to the stub gateway and
``python -m tools check`` must exit 0.

The ledger records every acknowledged answer (2xx, or an expected 409): a write acknowledged must
be found after every later restart. A write whose answer never came (the kill cut it off) may or
may not have happened, so the ledger keeps every value the record may hold, and the check is that
what is found is one of them. What a crash must never show, whatever was in flight:

- prompts: a family with zero or two active prompts (an activation is one transaction);
- agent definitions: a definition without its prompt mapping (two records, one transaction);
- token usage: a conversation with one of its two records; a total cost that is not the sum of
  the records;
- channel: an inbound message queued twice, or an acknowledged one answered as new again after
  a restart (the idempotency key must survive); an acknowledged reply neither in the outbox nor
  delivered; a dead-lettered reply (the stub gateway accepts everything);
- any index entry disagreeing with the records (``engine.indexes.check``).

PostgreSQL: without ``--database-url`` a throwaway cluster is started (tests/pgcluster.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scripts.serverproc import Client, GatewayStub, ServerProcess, run_tool, server_env

PROVIDERS = ("lmdb", "file", "sqlite", "postgresql")
ROUTE = {"provider": "WHATSAPP", "transport": "BUSINESS_API", "accountId": "torture"}
NANO = 10**9


class Violation(AssertionError):
    """What the server did contradicts what it acknowledged."""


@dataclass
class Stats:
    provider: str = ""
    kills: int = 0
    kills_at_startup: int = 0
    worker_kills: int = 0  # one worker alone, while its siblings and the parent went on
    workers: int = 1
    rounds: int = 0
    requests: int = 0
    acknowledged: int = 0
    writes_acknowledged: int = 0
    unanswered: int = 0
    verified: int = 0  # acknowledged writes found again (counted at every verification)
    checks: int = 0  # index consistency checks passed
    replies_delivered: int = 0
    replies_held: int = 0  # still in the outbox at the end (a lease to expire)
    duplicate_callbacks: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.provider} ({self.workers} worker processes): {self.kills} kills "
                f"({self.kills_at_startup} at startup, {self.worker_kills} single workers too), "
                f"{self.requests} requests, {self.acknowledged} answered "
                f"({self.writes_acknowledged} writes acknowledged), "
                f"{self.unanswered} unanswered, {self.verified} acknowledged writes verified, "
                f"{self.checks} index checks, {self.replies_delivered} replies delivered "
                f"({self.duplicate_callbacks} extra copies, {self.replies_held} still held), "
                f"{self.seconds:.0f} s")


# -- the ledger of one client thread ------------------------------------------------------------
class Ledger:
    """What one client thread was told. Names carry the thread's tag, so ledgers never overlap.

    A value set (``set[...]``) holds every value a record may have: the acknowledged one plus
    those of later writes whose answer was lost.
    """

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.n = 0
        # prompts
        self.prompts: dict[str, dict[str, Any]] = {}  # id -> {family, content, desc: set}
        self.families: dict[str, set[str] | None] = {}  # name -> possible active ids (None: any)
        # agent definitions, teams, MCP servers
        self.agents: dict[str, dict[str, Any]] = {}  # id -> {name, desc: set}
        self.teams: dict[str, dict[str, Any]] = {}  # id -> {name, deleted: True/False/None}
        self.mcp: dict[str, set[str | None]] = {}  # serverId -> possible args tag (None: absent)
        # token usage
        self.convs: dict[str, tuple[int, int, int, int]] = {}  # agentId -> tokens and nano-costs
        # artifacts
        self.artifacts: dict[str, str] = {}  # id -> path
        # channel
        self.peer = f"peer-{tag}"
        self.agent = f"agent-{tag}"
        self.binding_acked = False
        self.messages: dict[str, bool] = {}  # externalMessageId -> acknowledged as ingested
        self.unreplied: list[str] = []  # acknowledged messages without a turn yet
        self.acked_removed: set[str] = set()  # externalMessageIds whose inbox ack was answered
        self.maybe_removed: set[str] = set()
        self.replies: set[str] = set()  # acknowledged callbackIdempotencyKeys

    def next(self) -> int:
        self.n += 1
        return self.n


class Worker:
    """Drives random writes through one connection until the server stops answering."""

    def __init__(self, ledger: Ledger, client: Client, rng: random.Random, stats: Stats,
                 stop: threading.Event, lock: threading.Lock) -> None:
        self.l = ledger
        self.c = client
        self.rng = rng
        self.stats = stats
        self.stop = stop
        self.lock = lock  # stats are shared between workers
        self.errors: list[str] = []

    # -- plumbing ----------------------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int | None, Any]:
        status, answer = self.c.call(method, path, body, headers)
        with self.lock:
            self.stats.requests += 1
            if status is None:
                self.stats.unanswered += 1
            elif status < 500:
                self.stats.acknowledged += 1
                if method != "GET":
                    self.stats.writes_acknowledged += 1
        if status is not None and status >= 500:
            self.errors.append(f"{method} {path}: {status} {answer}")
            raise _Stop()
        return status, answer

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.errors.append(what)
            raise _Stop()

    def run(self) -> None:
        ops: list[tuple[float, Callable[[], None]]] = [
            (3, self.prompt_create), (3, self.prompt_revision), (3, self.prompt_activate),
            (2, self.prompt_patch), (2, self.agent_create), (1, self.agent_duplicate),
            (1, self.agent_patch), (2, self.team_create), (1, self.team_delete),
            (3, self.mcp_put), (1, self.mcp_delete), (3, self.conversation),
            (2, self.artifact), (4, self.ingress), (2, self.reply), (1, self.inbox_ack),
        ]
        weights = [w for w, _ in ops]
        try:
            if not self.l.binding_acked:
                self.binding()
            while not self.stop.is_set():
                self.rng.choices(ops, weights)[0][1]()
        except _Stop:
            pass

    def unknown(self) -> None:
        raise _Stop()

    # -- prompts -----------------------------------------------------------------------------
    def prompt_create(self) -> None:
        name = f"fam-{self.l.tag}-{self.l.next()}-"
        content = f"content of {name}"
        status, p = self.call("POST", "/rest/api/prompts",
                              {"name": name, "category": "torture", "promptContent": content})
        if status is None:
            self.l.families[name] = None
            self.unknown()
        self.expect(status == 201, f"create prompt: {status} {p}")
        self.expect(p["isActive"] and p["version"] == 1, f"first of a family: {p}")
        self.l.prompts[p["id"]] = {"family": name, "content": content, "desc": {None}}
        self.l.families[name] = {p["id"]}

    def _some_prompt(self) -> str | None:
        if not self.l.prompts:
            return None
        return self.rng.choice(list(self.l.prompts))

    def prompt_revision(self) -> None:
        pid = self._some_prompt()
        if pid is None:
            return self.prompt_create()
        content = f"revision {self.l.next()}"
        status, p = self.call("POST", f"/rest/api/prompts/{pid}/revisions",
                              {"promptContent": content})
        if status is None:
            self.unknown()
        self.expect(status == 201 and not p["isActive"], f"revision: {status} {p}")
        fam = self.l.prompts[pid]["family"]
        self.l.prompts[p["id"]] = {"family": fam, "content": content,
                                   "desc": set(self.l.prompts[pid]["desc"])}

    def prompt_activate(self) -> None:
        pid = self._some_prompt()
        if pid is None:
            return self.prompt_create()
        fam = self.l.prompts[pid]["family"]
        status, p = self.call("POST", f"/rest/api/prompts/{pid}/activate")
        if status is None:
            if self.l.families.get(fam) is not None:
                self.l.families[fam].add(pid)  # type: ignore[union-attr]
            self.unknown()
        self.expect(status == 200 and p["isActive"], f"activate: {status} {p}")
        self.l.families[fam] = {pid}

    def prompt_patch(self) -> None:
        pid = self._some_prompt()
        if pid is None:
            return self.prompt_create()
        desc = f"d{self.l.next()}"
        status, p = self.call("PATCH", f"/rest/api/prompts/{pid}", {"description": desc})
        if status is None:
            self.l.prompts[pid]["desc"].add(desc)
            self.unknown()
        self.expect(status == 200 and p["description"] == desc, f"patch prompt: {status} {p}")
        self.l.prompts[pid]["desc"] = {desc}

    # -- definitions -------------------------------------------------------------------------
    def agent_create(self) -> None:
        pid = self._some_prompt()
        if pid is None:
            return self.prompt_create()
        family = self.l.prompts[pid]["family"]
        name = f"agent-def-{self.l.tag}-{self.l.next()}"
        body = {"name": name, "role": "r", "description": "d0", "toolNames": ["t1", "t2"],
                "systemPromptCategory": "torture", "systemPromptName": family}
        status, a = self.call("POST", "/rest/api/agent-definitions", body)
        if status is None:
            self.unknown()
        self.expect(status == 201 and a["systemPromptName"] == family, f"agent: {status} {a}")
        self.l.agents[a["id"]] = {"name": name, "desc": {"d0"}, "family": family}

    def agent_duplicate(self) -> None:
        if not self.l.agents:
            return self.agent_create()
        agent = self.l.agents[self.rng.choice(list(self.l.agents))]
        body = {"name": agent["name"], "role": "r", "description": "dup",
                "systemPromptCategory": "torture", "systemPromptName": agent["family"]}
        status, a = self.call("POST", "/rest/api/agent-definitions", body)
        if status is None:
            self.unknown()
        self.expect(status == 409, f"a duplicate agent name was accepted: {status} {a}")

    def agent_patch(self) -> None:
        if not self.l.agents:
            return self.agent_create()
        aid = self.rng.choice(list(self.l.agents))
        desc = f"d{self.l.next()}"
        status, a = self.call("PATCH", f"/rest/api/agent-definitions/{aid}",
                              {"description": desc})
        if status is None:
            self.l.agents[aid]["desc"].add(desc)
            self.unknown()
        self.expect(status == 200 and a["description"] == desc, f"patch agent: {status} {a}")
        self.l.agents[aid]["desc"] = {desc}

    def team_create(self) -> None:
        name = f"team-{self.l.tag}-{self.l.next()}"
        body = {"name": name, "description": "d", "coordinatorMemberName": "m",
                "nodes": [{"memberName": "m", "referenceId": "1", "referenceType": "AGENT"}]}
        status, t = self.call("POST", "/rest/api/agent-team-definitions", body)
        if status is None:
            self.unknown()
        self.expect(status == 201, f"team: {status} {t}")
        self.l.teams[t["id"]] = {"name": name, "deleted": False}

    def team_delete(self) -> None:
        alive = [tid for tid, t in self.l.teams.items() if t["deleted"] is False]
        if not alive:
            return self.team_create()
        tid = self.rng.choice(alive)
        status, t = self.call("DELETE", f"/rest/api/agent-team-definitions/{tid}")
        if status is None:
            self.l.teams[tid]["deleted"] = None
            self.unknown()
        self.expect(status == 204, f"delete team: {status} {t}")
        self.l.teams[tid]["deleted"] = True

    # -- MCP servers -------------------------------------------------------------------------
    def mcp_put(self) -> None:
        sid = f"mcp-{self.l.tag}-{self.rng.randrange(5)}"
        tag = f"v{self.l.next()}"
        status, m = self.call("PUT", f"/rest/api/mcp-servers/{sid}",
                              {"transportType": "stdio", "command": "npx", "args": [tag]})
        if status is None:
            self.l.mcp.setdefault(sid, {None}).add(tag)
            self.unknown()
        self.expect(status in (200, 201) and m["args"] == [tag], f"mcp put: {status} {m}")
        self.l.mcp[sid] = {tag}

    def mcp_delete(self) -> None:
        present = [sid for sid, v in self.l.mcp.items() if None not in v]
        if not present:
            return self.mcp_put()
        sid = self.rng.choice(present)
        status, m = self.call("DELETE", f"/rest/api/mcp-servers/{sid}")
        if status is None:
            self.l.mcp[sid].add(None)
            self.unknown()
        self.expect(status == 204, f"mcp delete: {status} {m}")
        self.l.mcp[sid] = {None}

    # -- token usage and artifacts -----------------------------------------------------------
    def conversation(self) -> None:
        n = self.l.next()
        agent = f"conv-{self.l.tag}-{n}"
        pt, ct = n % 1000 + 1, n % 97 + 1
        pc, cc = (n % 50) * 1_000_000, (n % 13) * 3_000_000  # nano-units: exact in decimal
        status, recs = self.call("POST", "/rest/api/token-usage/conversations", {
            "agentId": agent, "llmModel": f"model-{self.l.tag}", "promptTokens": pt,
            "completionTokens": ct, "promptCost": pc / NANO, "completionCost": cc / NANO})
        if status is None:
            self.unknown()
        self.expect(status == 201 and len(recs) == 2, f"conversation: {status} {recs}")
        self.l.convs[agent] = (pt, ct, pc, cc)

    def artifact(self) -> None:
        path = f"/out/{self.l.tag}/{self.l.next()}.txt"
        status, a = self.call("POST", "/rest/api/agent-artifacts",
                              {"agentId": f"art-{self.l.tag}", "path": path, "type": "file"})
        if status is None:
            self.unknown()
        self.expect(status == 201 and a["path"] == path, f"artifact: {status} {a}")
        self.l.artifacts[a["id"]] = path

    # -- channel -----------------------------------------------------------------------------
    def binding(self) -> None:
        status, b = self.call("PUT", "/rest/api/channel-bindings",
                              {**ROUTE, "peerId": self.l.peer, "targetType": "AGENT",
                               "agentId": self.l.agent})
        if status is None:
            self.unknown()
        self.expect(status in (200, 201), f"binding: {status} {b}")
        self.l.binding_acked = True

    def _envelope(self, mid: str) -> dict[str, Any]:
        return {**ROUTE, "peerId": self.l.peer, "peerType": "USER", "externalMessageId": mid,
                "content": f"text of {mid}", "receivedAt": "2026-02-22T10:15:30.123Z"}

    def ingress(self) -> None:
        known = list(self.l.messages)
        if known and self.rng.random() < 0.3:
            mid = self.rng.choice(known)  # a gateway retry: must be a duplicate once acked
        else:
            mid = f"m-{self.l.tag}-{self.l.next()}"
        before = self.l.messages.get(mid)
        status, ans = self.call("POST", "/rest/api/channel-ingress/v1/messages",
                                self._envelope(mid))
        if status is None:
            self.l.messages.setdefault(mid, False)
            self.unknown()
        self.expect(status == 202, f"ingress: {status} {ans}")
        if before is True:
            self.expect(ans["disposition"] == "DUPLICATE" and ans["duplicate"],
                        f"an acknowledged message {mid} was taken as new: {ans}")
        elif before is None:
            self.expect(ans["disposition"] == "ROUTED", f"new message {mid}: {ans}")
        else:
            self.expect(ans["disposition"] in ("ROUTED", "DUPLICATE"), f"{mid}: {ans}")
        if not self.l.messages.get(mid):
            self.l.unreplied.append(mid)
        self.l.messages[mid] = True

    def reply(self) -> None:
        if not self.l.unreplied:
            return self.ingress()
        mid = self.l.unreplied.pop(self.rng.randrange(len(self.l.unreplied)))
        turn = f"turn-{mid}"
        status, r = self.call("POST", "/rest/api/channel-receipts/turns", {
            **ROUTE, "peerId": self.l.peer, "externalMessageId": mid, "turnId": turn,
            "agentId": self.l.agent})
        if status is None:
            self.unknown()
        self.expect(status == 200, f"receipt: {status} {r}")
        status, r = self.call("POST", "/rest/api/channel-replies",
                              {"agentId": self.l.agent, "turnId": turn,
                               "replyText": f"reply to {mid}"})
        if status is None:
            self.unknown()
        self.expect(status == 202 and r["published"], f"reply: {status} {r}")
        self.l.replies.add(r["callbackIdempotencyKey"])

    def inbox_ack(self) -> None:
        status, page = self.call("GET", f"/rest/api/channel-inbox/AGENT/{self.l.agent}?limit=3")
        if status is None:
            self.unknown()
        self.expect(status == 200, f"inbox: {status} {page}")
        items = page["items"]
        if not items:
            return
        ids = [m["id"] for m in items]
        mids = {m["externalSource"]["externalMessageId"] for m in items}
        status, ans = self.call("POST", f"/rest/api/channel-inbox/AGENT/{self.l.agent}/ack",
                                {"messageIds": ids})
        if status is None:
            self.l.maybe_removed |= mids
            self.unknown()
        self.expect(status == 200, f"inbox ack: {status} {ans}")
        self.l.acked_removed |= mids


class _Stop(Exception):
    pass


# -- verification --------------------------------------------------------------------------------
def verify(client: Client, ledgers: list[Ledger], stats: Stats, gateway: GatewayStub | None,
           rng: random.Random) -> None:
    """Compare the restarted server with every ledger; collapse each value set to what was
    found (from now on that is the acknowledged state). Raises Violation."""
    problems: list[str] = []
    verified = 0

    def bad(text: str) -> None:
        problems.append(text)

    # prompts: every acknowledged one, each family with exactly one active prompt
    prompts = {p["id"]: p for p in client.list_all("/rest/api/prompts", category="torture")}
    families: dict[str, list[dict[str, Any]]] = {}
    for p in prompts.values():
        families.setdefault(p["name"], []).append(p)
    for name, members in families.items():
        active = [p["id"] for p in members if p["isActive"]]
        if len(active) != 1:
            bad(f"prompt family {name}: {len(active)} active prompts {active}")
        versions = sorted(p["version"] for p in members)
        if len(set(versions)) != len(versions):
            bad(f"prompt family {name}: duplicate versions {versions}")
    for led in ledgers:
        for pid, want in led.prompts.items():
            got = prompts.get(pid)
            if got is None or got["name"] != want["family"] or \
                    got["promptContent"] != want["content"]:
                bad(f"acknowledged prompt {pid} ({want['family']}) is {got}")
                continue
            if got["description"] not in want["desc"]:
                bad(f"prompt {pid}: description {got['description']!r} not in {want['desc']}")
            want["desc"] = {got["description"]}
            verified += 1
        for name, possible in led.families.items():
            active = [p["id"] for p in families.get(name, []) if p["isActive"]]
            if possible is not None and (len(active) != 1 or active[0] not in possible):
                bad(f"family {name}: active {active}, acknowledged/possible {possible}")
            led.families[name] = set(active) if len(active) == 1 else None
    # agent definitions: present with their mapping; no definition anywhere without one
    agents = {a["id"]: a for a in client.list_all("/rest/api/agent-definitions")}
    for a in agents.values():
        if not a.get("systemPromptName") or not a.get("systemPromptCategory"):
            bad(f"agent definition {a['id']} lacks its prompt mapping: {a}")
    names = [a["name"] for a in agents.values()]
    if len(names) != len(set(names)):
        bad("two agent definitions share a name")
    for led in ledgers:
        for aid, want in led.agents.items():
            got = agents.get(aid)
            if got is None or got["name"] != want["name"] or got["toolNames"] != ["t1", "t2"] \
                    or got["systemPromptName"] != want["family"]:
                bad(f"acknowledged agent definition {aid} is {got}")
                continue
            if got["description"] not in want["desc"]:
                bad(f"agent {aid}: description {got['description']!r} not in {want['desc']}")
            want["desc"] = {got["description"]}
            verified += 1
    # teams
    teams = {t["id"]: t for t in client.list_all("/rest/api/agent-team-definitions")}
    for led in ledgers:
        for tid, want in led.teams.items():
            got = teams.get(tid)
            if want["deleted"] is True and got is not None:
                bad(f"team {tid} was deleted (acknowledged) but is back")
            elif want["deleted"] is False and (got is None or got["name"] != want["name"]):
                bad(f"acknowledged team {tid} is {got}")
            else:
                verified += 1
            want["deleted"] = got is None
    # MCP servers
    servers = {m["serverId"]: m for m in client.list_all("/rest/api/mcp-servers")}
    for led in ledgers:
        for sid, possible in led.mcp.items():
            got = servers.get(sid)
            tag = None if got is None else got["args"][0]
            if tag not in possible:
                bad(f"mcp server {sid}: found {tag!r}, acknowledged/possible {possible}")
            else:
                verified += 1
            led.mcp[sid] = {tag}
    # token usage: both records of a conversation or neither; totals are the records' sum
    records = client.list_all("/rest/api/token-usage/records", start="2000-01-01")
    by_agent: dict[str, list[dict[str, Any]]] = {}
    total = 0
    for r in records:
        by_agent.setdefault(r["agentId"], []).append(r)
        total += round(r["cost"] * NANO)
    for agent, recs in by_agent.items():
        if agent.startswith("conv-") and sorted(r["role"] for r in recs) != ["assistant", "user"]:
            bad(f"conversation {agent} has records {recs}")
    status, tc = client.read("GET", "/rest/api/token-usage/total-cost?start=2000-01-01")
    if status != 200 or round(tc["totalCost"] * NANO) != total:
        bad(f"total cost {tc} is not the sum of the records ({total / NANO})")
    for led in ledgers:
        for agent, (pt, ct, pc, cc) in led.convs.items():
            recs = {r["role"]: r for r in by_agent.get(agent, [])}
            want = {"user": (pt, pc), "assistant": (ct, cc)}
            got = {role: (r["tokenCount"], round(r["cost"] * NANO)) for role, r in recs.items()}
            if got != want:
                bad(f"acknowledged conversation {agent}: {got} != {want}")
            else:
                verified += 1
    # artifacts
    for led in ledgers:
        if not led.artifacts:
            continue
        found = {a["id"]: a["path"] for a in
                 client.list_all("/rest/api/agent-artifacts", agentId=f"art-{led.tag}")}
        for aid, path in led.artifacts.items():
            if found.get(aid) != path:
                bad(f"acknowledged artifact {aid} {path} is {found.get(aid)}")
            else:
                verified += 1
    # channel: the inbox holds each message at most once, every acknowledged one not acked away
    for led in ledgers:
        if not led.messages:
            continue
        inbox = client.list_all(f"/rest/api/channel-inbox/AGENT/{led.agent}")
        seen: dict[str, int] = {}
        for m in inbox:
            mid = m["externalSource"]["externalMessageId"]
            seen[mid] = seen.get(mid, 0) + 1
        for mid, n in seen.items():
            if n > 1:
                bad(f"message {mid} is queued {n} times")
            if mid in led.acked_removed:
                bad(f"message {mid} was acknowledged out of the inbox but is back")
        for mid, acked in led.messages.items():
            if acked and mid not in seen and mid not in led.acked_removed \
                    and mid not in led.maybe_removed:
                bad(f"acknowledged message {mid} is not in the inbox")
            elif acked:
                verified += 1
        led.acked_removed |= {m for m in led.maybe_removed if m not in seen}
        led.maybe_removed.clear()
        # the idempotency key survived the crash: an acknowledged message is a duplicate now
        acked = [mid for mid, a in led.messages.items() if a]
        for mid in rng.sample(acked, min(3, len(acked))):
            status, ans = client.call("POST", "/rest/api/channel-ingress/v1/messages",
                                      _envelope_of(led, mid))
            if status != 202 or ans["disposition"] != "DUPLICATE":
                bad(f"acknowledged message {mid} after a restart: {status} {ans}")
    # replies: each acknowledged one is in the outbox or was delivered; none dead-lettered
    outbox = client.list_all("/rest/api/channel-outbox")
    statuses = {e["callbackIdempotencyKey"]: e["status"] for e in outbox}
    delivered = gateway.keys() if gateway is not None else set()
    dead = [k for k, s in statuses.items() if s == "DEAD_LETTER"]
    if dead:
        bad(f"dead-lettered replies: {dead[:5]}")
    for led in ledgers:
        for key in led.replies:
            if key not in statuses and key not in delivered:
                bad(f"acknowledged reply {key} is neither in the outbox nor delivered")
            else:
                verified += 1
        for key in rng.sample(sorted(led.replies), min(2, len(led.replies))):
            status, ev = client.read("GET", "/rest/api/channel-delivery-events/"
                                     + urllib.parse.quote(key, safe=""))
            if status != 200:
                bad(f"delivery event of {key}: {status} {ev}")
    stats.verified += verified
    if problems:
        stats.problems.extend(problems)
        raise Violation("\n".join(problems[:30]))


def _envelope_of(led: Ledger, mid: str) -> dict[str, Any]:
    return {**ROUTE, "peerId": led.peer, "peerType": "USER", "externalMessageId": mid,
            "content": f"text of {mid}", "receivedAt": "2026-02-22T10:15:30.123Z"}


def check_store(provider: str, data_dir: str, database_url: str | None) -> None:
    """engine.indexes.check over every domain collection, in this process, server stopped."""
    from domains.registry import all_collections
    from engine import open_store
    from engine.indexes import check

    store = open_store(provider, data_dir=data_dir, database_url=database_url, readonly=True,
                       create=False)
    try:
        report = check(store, all_collections())
    finally:
        store.close()
    if not report.ok:
        raise Violation(f"index check after a crash:\n{report}")


def wait_delivered(client: Client, ledgers: list[Ledger], gateway: GatewayStub,
                   timeout: float) -> set[str]:
    """Wait until the gateway has every acknowledged reply; the keys still missing."""
    wanted = set().union(*(led.replies for led in ledgers))
    deadline = time.monotonic() + timeout
    while True:
        missing = wanted - gateway.keys()
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.2)


# -- the run ---------------------------------------------------------------------------------------
def _drive(led: Ledger, server: ServerProcess, rng: random.Random, stats: Stats,
           stop: threading.Event, lock: threading.Lock, clients: list[Worker],
           runners: list[threading.Thread]) -> None:
    """Start a client thread writing for ``led`` through a new connection."""
    w = Worker(led, server.client(), rng, stats, stop, lock)
    clients.append(w)
    runners.append(threading.Thread(target=w.run, daemon=True))
    runners[-1].start()


def torture(provider: str, kills: int, *, workdir: str, database_url: str | None = None,
            seed: int | None = None, threads: int = 3, max_run_s: float = 1.0,
            deliver_timeout: float = 60.0, require_delivery: bool = True, workers: int = 2,
            log: Callable[[str], None] = print) -> Stats:
    """Run ``kills`` SIGKILL rounds against one fresh store; raises Violation on any loss.

    At the end every acknowledged reply must reach the gateway within ``deliver_timeout``; with
    ``require_delivery`` False, one still held in the outbox (leased by a killed worker) passes.
    """
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    workers = 1 if provider == "file" else workers  # the file store: one process only
    stats = Stats(provider=provider, workers=workers)
    started = time.monotonic()
    gateway = GatewayStub()
    data_dir = os.path.join(workdir, f"torture-{provider}")
    env = server_env(provider, data_dir, database_url,
                     CHANNEL_CALLBACK_BASE_URL=gateway.base_url,
                     CHANNEL_CALLBACK_TIMEOUT_MS="1000",
                     AUTOBYTEUS_THREADS="6", AUTOBYTEUS_WORKERS=str(workers))
    ledgers = [Ledger(f"w{i}") for i in range(threads)]
    log(f"[torture] {provider}: seed {seed}, {kills} kills, {threads} client threads")
    server: ServerProcess | None = None
    tracebacks: list[str] = []
    try:
        while stats.kills < kills:
            if stats.kills and rng.random() < 0.1:
                # Kill while it starts: opening the store (torn-tail repair, reader cleanup).
                early = ServerProcess(env)
                time.sleep(rng.uniform(0.0, 0.4))
                early.kill()
                stats.kills += 1
                stats.kills_at_startup += 1
                check_store(provider, data_dir, database_url)
                stats.checks += 1
                continue
            server = ServerProcess.start(env)
            client = server.client()
            try:
                verify(client, ledgers, stats, gateway, rng)
            finally:
                client.close()
            stop = threading.Event()
            lock = threading.Lock()
            clients: list[Worker] = []
            runners: list[threading.Thread] = []
            for led in ledgers:
                _drive(led, server, random.Random(rng.random()), stats, stop, lock, clients,
                       runners)
            time.sleep(rng.uniform(0.02, max_run_s))
            pids = server.workers()
            if workers > 1 and pids and (rng.random() < 0.5 or not stats.worker_kills):
                # One worker dies alone; the parent replaces it while the others serve.
                os.kill(rng.choice(pids), signal.SIGKILL)
                stats.worker_kills += 1
                time.sleep(rng.uniform(0.02, max_run_s))
                # Clients whose connection went with it carry on through new connections.
                for led, w, t in list(zip(ledgers, clients, runners, strict=True)):
                    if not t.is_alive() and not w.errors:
                        _drive(led, server, random.Random(rng.random()), stats, stop, lock,
                               clients, runners)
                time.sleep(rng.uniform(0.02, max_run_s))
            server.kill()
            stop.set()
            for t in runners:
                t.join(60)
            for w in clients:
                w.c.close()
            errors = [e for w in clients for e in w.errors]
            if "Traceback" in server.text():
                tracebacks.append(server.text())
            server = None
            stats.kills += 1
            stats.rounds += 1
            if errors:
                stats.problems.extend(errors)
                raise Violation("answers while the server was up:\n" + "\n".join(errors[:20]))
            check_store(provider, data_dir, database_url)
            stats.checks += 1
            if stats.kills % 10 == 0:
                stats.seconds = time.monotonic() - started
                log(f"[torture] {stats.line()}")
        # the last restart: verify, drain the outbox, stop cleanly, and the tool's check
        server = ServerProcess.start(env)
        client = server.client()
        try:
            verify(client, ledgers, stats, gateway, rng)
            missing = wait_delivered(client, ledgers, gateway, deliver_timeout)
            outbox = {e["callbackIdempotencyKey"]: e
                      for e in client.list_all("/rest/api/channel-outbox")}
            # A reply leased by a worker that was killed mid-send waits for its lease to expire
            # (2 x timeout + 10 s) before another worker sends it: held, not lost.
            held = {k for k in missing
                    if outbox.get(k, {}).get("status") in ("PENDING", "DISPATCHING",
                                                           "FAILED_RETRY")}
            if missing - held or (missing and require_delivery):
                raise Violation(f"{len(missing)} acknowledged replies never delivered: "
                                + json.dumps([outbox.get(k) or k for k in sorted(missing)[:5]]))
            stats.replies_held = len(held)
        finally:
            client.close()
        code = server.stop()
        if code != 0:
            raise Violation(f"the server exited {code} on SIGTERM:\n{server.text()[-3000:]}")
        if "Traceback" in server.text():
            tracebacks.append(server.text())
        server = None
        if tracebacks:
            raise Violation("a server logged a traceback:\n" + tracebacks[0][-4000:])
        out = run_tool(env, "check")
        if out.returncode != 0:
            raise Violation(f"python -m tools check exited {out.returncode}:\n"
                            f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        stats.checks += 1
        stats.replies_delivered = len(gateway.keys())
        stats.duplicate_callbacks = gateway.copies - len(gateway.keys())
    except Violation:
        log(f"[torture] {provider}: FAILED with seed {seed}")
        raise
    finally:
        if server is not None:
            server.kill()
        gateway.close()
        stats.seconds = time.monotonic() - started
    log(f"[torture] {stats.line()}")
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.torture", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", action="append", choices=(*PROVIDERS, "all"),
                        help="repeatable; default all")
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs per provider")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int, default=3, help="client threads")
    parser.add_argument("--workers", type=int, default=2,
                        help="server worker processes (file: always 1)")
    parser.add_argument("--max-run", type=float, default=1.5,
                        help="longest time (s) between a restart's verification and its kill")
    parser.add_argument("--database-url", help="PostgreSQL to use (default: a throwaway cluster)")
    parser.add_argument("--workdir", help="where the stores go (default: a temporary directory)")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks kill the server and stop the cluster.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    providers = args.provider or ["all"]
    if "all" in providers:
        providers = list(PROVIDERS)
    workdir = args.workdir or tempfile.mkdtemp(prefix="autobyteus-torture-")
    cluster = None
    failed = False
    results = []
    try:
        for provider in providers:
            url = None
            if provider == "postgresql":
                url = args.database_url
                if url is None:
                    if cluster is None:
                        from tests.pgcluster import PgCluster

                        cluster = PgCluster.from_env_or_start()
                    url = cluster.create_database(f"torture_{os.getpid()}")
            try:
                results.append(torture(provider, args.kills, workdir=workdir, database_url=url,
                                       seed=args.seed, threads=args.threads,
                                       max_run_s=args.max_run, workers=args.workers))
            except Violation as exc:
                failed = True
                print(f"[torture] {provider}: VIOLATION\n{exc}", file=sys.stderr)
    finally:
        if cluster is not None:
            cluster.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(s.line() for s in results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
