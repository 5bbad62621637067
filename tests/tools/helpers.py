"""Shared pieces of the tool tests: CLI flags for a store, a representative data set, snapshots."""

from __future__ import annotations

import json
import time
from typing import Any

from engine import MAX_KEY_SIZE, Store, open_store
from engine.indexes import Collection, OrderedIndex, Rollup, TtlSpace, UniqueIndex, transact
from engine.indexes.definitions import ID_BLOCK
from tools.cli import main

#: A collection with every kind of index, standing in for domains that do not import yet.
ITEMS = Collection(
    "tool_items",
    json.loads,
    unique=[UniqueIndex("name", lambda r: r["name"]),
            UniqueIndex("long", lambda r: r.get("long"))],
    ordered=[OrderedIndex("by_group", lambda r: (r["group"], r["n"]))],
    rollups=[Rollup("per_group", lambda r: ((r["group"],), {"n": 1, "amount": r["amount"]}))],
)
IDEM = TtlSpace("tool_idem")


def flags(provider: str, location: dict[str, Any]) -> list[str]:
    out = ["--provider", provider]
    if "database_url" in location:
        out += ["--database-url", location["database_url"]]
    else:
        out += ["--data-dir", location["data_dir"]]
    return out


def target_flags(provider: str, location: dict[str, Any]) -> list[str]:
    out = ["--to", provider]
    if "database_url" in location:
        out += ["--to-database-url", location["database_url"]]
    else:
        out += ["--to-data-dir", location["data_dir"]]
    return out


def tool(*argv: str) -> int:
    return main(list(argv))


def sequence_after_fill(provider: str, n: int = 12) -> int:
    """The sequence value ``fill`` leaves: the last id, or where writers run in parallel
    (postgresql) the end of the block of ids it reserved."""
    return ID_BLOCK if provider == "postgresql" else n


def fill(store: Store, n: int = 12) -> None:
    """Records with unique, long-unique, ordered and roll-up entries; a sequence ahead of every
    id; live, never-expiring and expired TTL keys; keys and values of awkward shapes."""

    def go(txn: Any) -> None:
        for i in range(1, n + 1):
            rec = {"name": f"item-{i}", "group": f"g{i % 3}", "n": i, "amount": i * 10,
                   "text": "héllo wörld ✓" * (i % 2)}
            if i % 4 == 0:
                rec["long"] = "L" * 600 + str(i)  # claimed through a hash bucket
            rid = ITEMS.next_id(txn)
            ITEMS.insert(txn, rid, json.dumps(rec).encode(), rec)
        ITEMS.delete(txn, str(n))  # the sequence stays ahead of the highest surviving id
        now = time.time()
        IDEM.reserve(txn, "live", 3600, now=now)
        IDEM.reserve(txn, "forever", 0, now=now)
        IDEM.reserve(txn, "gone", 1, now=now - 100)
        IDEM.reserve(txn, b"\xff" * 450, 3600, now=now)  # a long key: identified by its hash
        txn.put(b"", b"the empty key")
        txn.put(b"\xff\x00\xfe", b"\x00\x80\xff not utf-8")
        txn.put(b"k" * MAX_KEY_SIZE, b"")
        txn.put(b"big", bytes(range(256)) * 300)
        txn.put("ünïcødé ✓".encode(), "välue ✓".encode())

    transact(store, go)


def contents(provider: str, location: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    store = open_store(provider, **location, readonly=True, create=False)
    try:
        with store.begin() as txn:
            return list(txn.scan())
    finally:
        store.close()


def read_lines(path: Any) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        return [json.loads(line) for line in f]


def fill_domains(store: Store) -> list[str]:
    """Fill every domain through its own service, plus the index-layer stand-ins (``fill``).
    Returns the domains filled through services."""
    import datetime as dt

    from domains.common import format_timestamp
    from domains.registry import build_services
    from tests.domains.channel_support import KeywordCommands
    from tests.domains.json_commands import (
        AGENT_DEFINITIONS,
        AGENT_TEAMS,
        ARTIFACTS,
        MCP_SERVERS,
        PROMPTS,
        TOKEN_USAGE,
        JsonCommands,
    )

    services = build_services(store, settings={"callback_configured": True})
    prompts = JsonCommands(services.prompts, PROMPTS)
    first = prompts.create({"name": "sys", "category": "agent", "promptContent": "You are…"})
    prompts.create_revision(first.id, {"promptContent": "v2"})
    prompts.activate(first.id)
    prompts.create({"name": "sys", "category": "agent", "promptContent": "gpt",
                    "suitableForModels": "gpt-4"})
    prompts.create({"name": "other", "category": "tools", "promptContent": "x" * 2000})
    for i in range(3):
        JsonCommands(services.agent_definitions, AGENT_DEFINITIONS).create({
            "name": f"writer{i}", "role": "writes", "description": "d",
            "systemPromptCategory": "agent", "systemPromptName": "sys", "toolNames": ["search"]})
    JsonCommands(services.agent_teams, AGENT_TEAMS).create({
        "name": "team", "description": "a team", "coordinatorMemberName": "lead",
        "nodes": [{"memberName": "lead", "referenceId": "1", "referenceType": "AGENT"}],
    })
    JsonCommands(services.mcp_servers, MCP_SERVERS).configure(
        "srv1", {"transportType": "stdio", "command": "node"})
    usage = JsonCommands(services.token_usage, TOKEN_USAGE)
    usage.record_conversation({
        "agentId": "run-1", "llmModel": "gpt-4", "promptTokens": 10, "completionTokens": 4,
        "promptCost": 0.25, "completionCost": 0.5})
    usage.record({"agentId": "run-2", "role": "user", "tokenCount": 3})
    JsonCommands(services.artifacts, ARTIFACTS).create({"agentId": "run-1",
                                                        "path": "out/chart.png"})
    assert services.channel is not None
    channel = KeywordCommands(services.channel)
    route = {"provider": "TELEGRAM", "transport": "BUSINESS_API", "account_id": "acc",
             "peer_id": "peer-1"}
    channel.upsert_binding(**route, target_type="AGENT", agent_id="agent-1")
    now = dt.datetime.now(dt.UTC)
    for message_id in ("m1", "m2", "m1"):  # the second m1 is a duplicate
        channel.ingest(**route, peer_type="USER", external_message_id=message_id,
                       content="hello", received_at=format_timestamp(now))
    channel.bind_turn(**route, external_message_id="m1", turn_id="turn-1", agent_id="agent-1")
    reply = channel.publish_reply(agent_id="agent-1", turn_id="turn-1", reply_text="hi")
    assert reply.published, reply
    fill(store)
    return ["prompts", "agent_definitions", "agent_teams", "mcp_servers", "token_usage",
            "artifacts", "channel"]


WRITER = """
import json, sys, threading
from engine import open_store
from engine.keys import pack
provider, location = sys.argv[1], json.loads(sys.argv[2])
store = open_store(provider, **location)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
n = 0
while not stop.is_set():
    n += 1
    with store.begin(write=True) as txn:
        for j in range(5):
            txn.put(pack(("w", j)), str(n).encode())
        for j in range(3):
            txn.put(pack(("n", n, j)), b"x" * 50)
    if n == 30:
        print("ready", flush=True)
store.close()
print(n, flush=True)
"""
"""A writer process: transactions of eight keys that must be seen all or none; ``ready`` on
stdout after 30 of them; closing its stdin stops it, and it prints how many it committed."""


def check_snapshot(pairs: list[tuple[bytes, bytes]]) -> int:
    """Assert that ``pairs`` hold whole WRITER transactions 1..n, nothing else; returns n."""
    from engine.keys import unpack

    w = {unpack(k)[1]: int(v) for k, v in pairs if unpack(k)[0] == "w"}
    assert len(w) == 5 and len(set(w.values())) == 1, w  # all five from one transaction
    n = next(iter(w.values()))
    groups: dict[int, set[Any]] = {}
    for k, _ in pairs:
        t = unpack(k)
        if t[0] == "n":
            groups.setdefault(t[1], set()).add(t[2])  # type: ignore[arg-type]
    assert set(groups) == set(range(1, n + 1))  # every transaction up to n, none after
    assert all(js == {0, 1, 2} for js in groups.values())
    return n
