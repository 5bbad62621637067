"""MCP server configurations (domains.md section 4) on every backend: per-transport rules and
defaults, upsert, ETags, the list order and its pages, startup loading, and the import (one
transaction for the valid entries, a report per server, a bad document refused before any write)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

import pytest

from domains import mcp_servers
from domains.common import etag_of
from domains.errors import NotFoundError, PreconditionFailedError, ValidationError
from domains.mcp_servers import codec, repository
from domains.mcp_servers.models import StdioServer, StreamableHttpServer, WebsocketServer
from domains.mcp_servers.service import McpServerService
from engine import Store
from engine.indexes import check
from tests.domains.counting import CountingStore
from tests.domains.json_commands import MCP_SERVERS, JsonCommands


class TickingClock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 2, 22, 10, 15, 30, 123000, tzinfo=dt.UTC)
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            self.now += dt.timedelta(milliseconds=1)
            return self.now


@pytest.fixture
def svc(store: Store) -> Any:
    return JsonCommands(McpServerService(store, clock=TickingClock()), MCP_SERVERS)


def _invalid(svc: McpServerService, body: dict, field: str, code: str = "VALIDATION_ERROR",
             server_id: str = "s") -> None:
    with pytest.raises(ValidationError) as exc:
        svc.configure(server_id, body)
    assert exc.value.field == field, exc.value.detail
    assert exc.value.code == code


# -- configure ------------------------------------------------------------------------------------
def test_configure_creates_then_replaces(svc: McpServerService) -> None:
    server, created = svc.configure("fs", {"transportType": "stdio", "command": "npx",
                                           "args": ["-y", "fs"], "env": {"A": "1"}, "cwd": ""})
    assert created and isinstance(server, StdioServer)
    doc = codec.to_json(server)
    assert doc == {
        "serverId": "fs", "transportType": "stdio", "enabled": True, "toolNamePrefix": None,
        "command": "npx", "args": ["-y", "fs"], "env": {"A": "1"}, "cwd": None,
        "createdAt": "2026-02-22T10:15:30.124Z", "updatedAt": "2026-02-22T10:15:30.124Z",
    }
    again, created = svc.configure("fs", {"command": "uvx", "enabled": False,
                                          "toolNamePrefix": "fs_"})
    assert not created
    assert again.command == "uvx" and again.args == [] and again.enabled is False
    assert again.tool_name_prefix == "fs_"
    assert again.created_at == server.created_at and again.updated_at > server.updated_at
    assert svc.get("fs") == again


def test_transport_defaults_and_inference(svc: McpServerService) -> None:
    http, _ = svc.configure("h", {"url": "https://example.com/mcp", "token": "t",
                                  "headers": {"X": "y"}})
    assert isinstance(http, StreamableHttpServer)
    assert (http.url, http.token, http.headers) == ("https://example.com/mcp", "t", {"X": "y"})
    ws, _ = svc.configure("w", {"transportType": "WebSocket", "url": "wss://h/x"})
    assert isinstance(ws, WebsocketServer)
    assert ws.open_timeout == 10.0 and ws.verify_tls is True and ws.headers == {}
    assert ws.subprotocols == [] and ws.ping_interval is None and ws.client_cert is None
    ws2, _ = svc.configure("w2", {
        "transportType": "websocket", "url": "ws://h", "subprotocols": ["mcp"], "origin": "o",
        "openTimeout": 3, "pingInterval": 1.5, "pingTimeout": 2, "verifyTls": False,
        "caFile": "ca", "clientCert": "c", "clientKey": "k",
    })
    assert ws2.open_timeout == 3.0 and ws2.ping_interval == 1.5 and ws2.verify_tls is False
    assert codec.to_json(ws2)["clientKey"] == "k"
    # A GET answer can be PUT back as it is (read-only timestamps are ignored).
    _, created = svc.configure("w2", codec.to_json(ws2))
    assert not created and svc.get("w2").client_key == "k"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"transportType": "stdio"}, "command", "VALIDATION_ERROR"),
        ({"transportType": "stdio", "command": "  "}, "command", "VALIDATION_ERROR"),
        ({"command": 5}, "command", "VALIDATION_ERROR"),
        ({"command": "x", "args": "a b"}, "args", "VALIDATION_ERROR"),
        ({"command": "x", "env": {"A": 1}}, "env", "VALIDATION_ERROR"),
        ({"command": "x", "enabled": "yes"}, "enabled", "VALIDATION_ERROR"),
        ({"command": "x", "comand": "y"}, "comand", "UNKNOWN_FIELD"),
        ({"command": "x", "url": "http://h"}, "url", "UNKNOWN_FIELD"),  # another transport's
        ({"transportType": "streamable_http"}, "url", "VALIDATION_ERROR"),
        ({"transportType": "websocket", "url": "http://h"}, "url", "VALIDATION_ERROR"),
        ({"transportType": "websocket", "url": "ws://"}, "url", "VALIDATION_ERROR"),
        ({"transportType": "websocket", "url": "ws://h", "clientKey": "k"}, "clientKey",
         "VALIDATION_ERROR"),
        ({"transportType": "websocket", "url": "ws://h", "openTimeout": -1}, "openTimeout",
         "VALIDATION_ERROR"),
        ({"transportType": "websocket", "url": "ws://h", "pingInterval": True}, "pingInterval",
         "VALIDATION_ERROR"),
        ({"transportType": "websocket", "url": "ws://h", "pingTimeout": 10**400}, "pingTimeout",
         "VALIDATION_ERROR"),  # an int too large for a float
        ({"transportType": "sse", "url": "http://h"}, "transportType", "VALIDATION_ERROR"),
        ({"enabled": True}, "transportType", "VALIDATION_ERROR"),
        ({"serverId": "other", "command": "x"}, "serverId", "VALIDATION_ERROR"),
    ],
)
def test_configure_rejects(svc: McpServerService, body: dict, field: str, code: str) -> None:
    _invalid(svc, body, field, code)
    assert svc.list().items == []


def test_server_id_rules(svc: McpServerService) -> None:
    _invalid(svc, {"command": "x"}, "serverId", server_id="  ")
    _invalid(svc, {"command": "x"}, "serverId", server_id="x" * 129)
    with pytest.raises(ValidationError):
        svc.configure("s", ["not", "an", "object"])
    server, _ = svc.configure("x" * 128, {"command": "x"})
    assert svc.get("x" * 128) == server


def test_get_and_delete(svc: McpServerService) -> None:
    with pytest.raises(NotFoundError):
        svc.get("nope")
    with pytest.raises(NotFoundError):
        svc.delete("nope")
    svc.configure("a", {"command": "x"})
    svc.delete("a")
    with pytest.raises(NotFoundError):
        svc.get("a")
    _, created = svc.configure("a", {"command": "x"})
    assert created


def test_etag_preconditions(svc: McpServerService) -> None:
    with pytest.raises(PreconditionFailedError):  # If-Match on a configuration that is absent
        svc.configure("a", {"command": "x"}, expected_etag="whatever")
    server, _ = svc.configure("a", {"command": "x"})
    tag = svc.etag(server)
    assert tag == etag_of(codec.to_json(server))
    with pytest.raises(PreconditionFailedError):
        svc.configure("a", {"command": "y"}, expected_etag="stale")
    assert svc.get("a").command == "x"
    updated, created = svc.configure("a", {"command": "y"}, expected_etag=tag)
    assert not created and updated.command == "y"
    with pytest.raises(PreconditionFailedError):
        svc.delete("a", expected_etag=tag)  # the tag of the replaced version
    svc.delete("a", expected_etag=svc.etag(updated))
    with pytest.raises(NotFoundError):
        svc.get("a")


def test_list_pages_walk_in_server_id_order(svc: McpServerService) -> None:
    ids = ["10", "9", "1", "007", "a", "B", "b-2", "zz", "é", "100", "Z", "_x", "0"]
    for i, sid in enumerate(ids):
        svc.configure(sid, {"command": "x", "enabled": i % 3 != 0})
    for limit in (1, 4, 100):
        seen, cursor = [], None
        while True:
            page = svc.list(limit=limit, cursor=cursor)
            seen += [s.server_id for s in page.items]
            assert len(page.items) <= limit
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == sorted(ids)
    enabled = svc.enabled_configurations()
    assert [s.server_id for s in enabled] == sorted(s for i, s in enumerate(ids) if i % 3 != 0)
    with pytest.raises(ValidationError):
        svc.list(limit=0)
    with pytest.raises(ValidationError):
        svc.list(cursor="!!!")


# -- import ---------------------------------------------------------------------------------------
DOCUMENT = {
    "mcpServers": {
        "files": {"command": "npx", "args": ["-y", "@mcp/fs"], "env": {"HOME": "/h"}},
        "nested": {"transport_type": "stdio", "enabled": False, "tool_name_prefix": "n_",
                   "stdio_params": {"command": "python", "args": ["-m", "srv"], "cwd": "/w"}},
        "web": {"url": "https://mcp.example.com"},
        "sock": {"transport_type": "websocket",
                 "websocket_params": {"url": "wss://x", "open_timeout": 5, "verify_tls": False}},
        "no-command": {"transport_type": "stdio", "args": []},
        "bad-ws": {"transport_type": "websocket", "url": "https://x"},
        "typo": {"command": "x", "argz": []},
        "not-object": "npx fs",
        "key-no-cert": {"transport_type": "websocket",
                        "websocket_params": {"url": "ws://x", "client_key": "k"}},
    }
}


def test_import_reports_each_server_and_stores_the_valid_ones(svc: McpServerService) -> None:
    svc.configure("web", {"command": "old"})
    result = svc.import_servers(json.loads(json.dumps(DOCUMENT)))
    doc = codec.import_result_to_json(result)
    assert doc["importedCount"] == 4 and doc["failedCount"] == 5
    assert list(doc["results"]) == list(DOCUMENT["mcpServers"])
    statuses = {k: v["status"] for k, v in doc["results"].items()}
    assert statuses == {
        "files": "imported", "nested": "imported", "web": "imported", "sock": "imported",
        "no-command": "failed", "bad-ws": "failed", "typo": "failed", "not-object": "failed",
        "key-no-cert": "failed",
    }
    assert doc["results"]["web"]["message"] == "replaced"
    assert doc["results"]["files"]["message"] == "created"
    assert "command" in doc["results"]["no-command"]["message"]
    assert "argz" in doc["results"]["typo"]["message"]
    assert "clientCert" in doc["results"]["key-no-cert"]["message"]
    assert [s.server_id for s in svc.list().items] == ["files", "nested", "sock", "web"]
    nested = svc.get("nested")
    assert isinstance(nested, StdioServer)
    assert (nested.command, nested.args, nested.cwd, nested.enabled, nested.tool_name_prefix) == (
        "python", ["-m", "srv"], "/w", False, "n_")
    assert isinstance(svc.get("web"), StreamableHttpServer)
    sock = svc.get("sock")
    assert isinstance(sock, WebsocketServer)
    assert sock.open_timeout == 5.0 and sock.verify_tls is False
    assert [s.server_id for s in svc.enabled_configurations()] == ["files", "sock", "web"]


def test_import_writes_in_one_transaction(store: Store) -> None:
    counting = CountingStore(store)
    svc = JsonCommands(McpServerService(counting, clock=TickingClock()), MCP_SERVERS)
    svc.import_servers(DOCUMENT)
    assert counting.counts.write_txns == 1


def test_import_is_all_or_nothing_on_a_store_failure(
    svc: McpServerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_put = repository.put
    calls = []

    def failing_put(txn, server):
        calls.append(server.server_id)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real_put(txn, server)

    monkeypatch.setattr(repository, "put", failing_put)
    with pytest.raises(RuntimeError):
        svc.import_servers(DOCUMENT)
    monkeypatch.setattr(repository, "put", real_put)
    assert svc.list().items == []


@pytest.mark.parametrize(
    "document",
    [
        [],
        "mcpServers",
        {},
        {"mcpServers": []},
        {"mcpServers": "x"},
        {"mcpServers": None},
        {"mcpServers": {"a": {"command": "x"}}, "extra": 1},
        {"servers": {"a": {"command": "x"}}},
    ],
)
def test_import_refuses_a_document_of_another_shape(
    svc: McpServerService, document: object
) -> None:
    with pytest.raises(ValidationError):
        svc.import_servers(document)
    assert svc.list().items == []


def test_import_of_an_empty_map_writes_nothing(svc: McpServerService) -> None:
    result = svc.import_servers({"mcpServers": {}})
    assert (result.imported_count, result.failed_count, result.results) == (0, 0, {})


# -- storage --------------------------------------------------------------------------------------
def test_codec_round_trip_and_envelope(svc: McpServerService, store: Store) -> None:
    svc.import_servers(DOCUMENT)
    for server in svc.list().items:
        raw = codec.to_bytes(server)
        assert json.loads(raw)["v"] == codec.FORMAT_VERSION
        assert codec.from_bytes(raw) == server
    with pytest.raises(codec.RecordFormatError):
        codec.from_bytes(b'{"v": 99, "transportType": "stdio"}')
    with pytest.raises(codec.RecordFormatError):
        codec.from_bytes(b"not json")
    svc.delete("web")
    report = check(store, mcp_servers.collections())
    assert report.ok, str(report)


def test_concurrent_first_configure_creates_once(svc: McpServerService) -> None:
    barrier = threading.Barrier(4)
    results: list[bool] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        _, created = svc.configure("shared", {"command": f"c{i}"})
        with lock:
            results.append(created)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert [s.server_id for s in svc.list().items] == ["shared"]
