"""MCP server configurations over HTTP (api.md "MCP servers", domains.md 4), lmdb store."""

from __future__ import annotations

import json
from typing import Any

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

MCP = "/rest/api/mcp-servers"
IMPORT = MCP + "/import"
COMMON = {"serverId", "transportType", "enabled", "toolNamePrefix", "createdAt", "updatedAt"}
STDIO_FIELDS = COMMON | {"command", "args", "env", "cwd"}
HTTP_FIELDS = COMMON | {"url", "token", "headers"}
WS_FIELDS = COMMON | {"url", "headers", "subprotocols", "origin", "openTimeout", "pingInterval",
                      "pingTimeout", "verifyTls", "caFile", "clientCert", "clientKey"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def api(make_store: Any, clock: ManualClock) -> falcon.testing.TestClient:
    return make_api(make_store, clock)


def put(api: falcon.testing.TestClient, server_id: str, body: Any,
        **kw: Any) -> falcon.testing.Result:
    return api.simulate_put(f"{MCP}/{server_id}", json=body, **kw)


def test_put_creates_201_then_replaces_200(api: falcon.testing.TestClient,
                                           clock: ManualClock) -> None:
    first = put(api, "fs", {"transportType": "stdio", "command": "npx",
                            "args": ["-y", "server"], "env": {"A": "1"}, "cwd": "/tmp",
                            "toolNamePrefix": "fs_"})
    assert first.status_code == 201, first.text
    assert first.headers["location"] == f"{MCP}/fs"
    assert first.headers["etag"]
    body = first.json
    assert set(body) == STDIO_FIELDS
    assert body == {"serverId": "fs", "transportType": "stdio", "enabled": True,
                    "toolNamePrefix": "fs_", "command": "npx", "args": ["-y", "server"],
                    "env": {"A": "1"}, "cwd": "/tmp",
                    "createdAt": iso(clock.now), "updatedAt": iso(clock.now)}
    got = api.simulate_get(f"{MCP}/fs")
    assert got.status_code == 200 and got.json == body and got.headers["etag"]
    clock.tick(seconds=30)
    second = put(api, "fs", {"transportType": "stdio", "command": "uvx", "cwd": "",
                             "enabled": False})
    assert second.status_code == 200, second.text
    replaced = second.json
    # PUT replaces the whole configuration: what is omitted takes its default
    assert replaced == {"serverId": "fs", "transportType": "stdio", "enabled": False,
                        "toolNamePrefix": None, "command": "uvx", "args": [], "env": {},
                        "cwd": None, "createdAt": body["createdAt"],
                        "updatedAt": iso(clock.now)}
    assert_timestamps(replaced)
    # a transport change replaces too
    third = put(api, "fs", {"transportType": "streamable_http", "url": "http://h/mcp"})
    assert third.status_code == 200 and set(third.json) == HTTP_FIELDS
    assert third.json["createdAt"] == body["createdAt"]
    # what a GET answers can be PUT back unchanged
    again = put(api, "fs", api.simulate_get(f"{MCP}/fs").json)
    assert again.status_code == 200 and again.json["url"] == "http://h/mcp"


def test_streamable_http_and_websocket_shapes(api: falcon.testing.TestClient) -> None:
    http = put(api, "h", {"transportType": "streamable_http", "url": "https://h/mcp",
                          "token": "t", "headers": {"X": "y"}})
    assert http.status_code == 201
    assert {k: http.json[k] for k in ("url", "token", "headers")} == {
        "url": "https://h/mcp", "token": "t", "headers": {"X": "y"}}
    ws = put(api, "w", {"transportType": "websocket", "url": "wss://h/ws"})
    assert ws.status_code == 201 and set(ws.json) == WS_FIELDS
    assert ws.json["openTimeout"] == 10.0 and ws.json["verifyTls"] is True
    assert ws.json["headers"] == {} and ws.json["subprotocols"] == []
    assert ws.json["pingInterval"] is None and ws.json["clientKey"] is None
    full = put(api, "w", {"transportType": "websocket", "url": "ws://h", "openTimeout": 2.5,
                          "pingInterval": 5, "pingTimeout": 1, "verifyTls": False,
                          "subprotocols": ["mcp"], "origin": "http://o", "caFile": "/ca",
                          "clientCert": "/c", "clientKey": "/k"})
    assert full.status_code == 200, full.text
    assert full.json["openTimeout"] == 2.5 and full.json["clientKey"] == "/k"
    # transport type is inferred from command (stdio) or url (streamable_http)
    assert put(api, "inferred-stdio", {"command": "x"}).json["transportType"] == "stdio"
    inferred = put(api, "inferred-http", {"url": "http://x"}).json
    assert inferred["transportType"] == "streamable_http"


@pytest.mark.parametrize("body,field", [
    ({"transportType": "stdio"}, "command"),
    ({"transportType": "stdio", "command": "  "}, "command"),
    ({"transportType": "stdio", "command": "x", "url": "http://x"}, "url"),
    ({"transportType": "stdio", "command": "x", "args": "a b"}, "args"),
    ({"transportType": "stdio", "command": "x", "env": {"A": 1}}, "env"),
    ({"transportType": "stdio", "command": "x", "enabled": "yes"}, "enabled"),
    ({"transportType": "streamable_http"}, "url"),
    ({"transportType": "streamable_http", "url": "http://x", "headers": ["a"]}, "headers"),
    ({"transportType": "websocket", "url": "http://x"}, "url"),
    ({"transportType": "websocket", "url": "ws://x", "clientKey": "/k"}, "clientKey"),
    ({"transportType": "websocket", "url": "ws://x", "openTimeout": -1}, "openTimeout"),
    ({"transportType": "websocket", "url": "ws://x", "openTimeout": "10"}, "openTimeout"),
    ({"transportType": "websocket", "url": "ws://x", "verifyTls": "no"}, "verifyTls"),
    ({"transportType": "carrier-pigeon", "command": "x"}, "transportType"),
    ({"enabled": True}, "transportType"),
    ({"transportType": "stdio", "command": "x", "serverId": "other"}, "serverId"),
    ({"transportType": "stdio", "command": "x", "comand": "typo"}, "comand"),
])
def test_put_rejections_name_the_field_and_write_nothing(
    api: falcon.testing.TestClient, body: dict, field: str
) -> None:
    assert_error(put(api, "s", body), 400, field=field)
    assert_error(api.simulate_get(f"{MCP}/s"), 404, "NOT_FOUND")


def test_huge_numbers_in_a_put_are_400(api: falcon.testing.TestClient) -> None:
    for literal in (b"1" + b"0" * 400, b"1e400", b"-1e400"):
        body = b'{"transportType":"websocket","url":"ws://x","openTimeout":' + literal + b"}"
        assert_error(raw_post(api, "PUT", f"{MCP}/s", body), 400, field="openTimeout")
    assert first_page(api, MCP) == []


def test_get_delete_404_and_if_match(api: falcon.testing.TestClient, clock: ManualClock) -> None:
    assert_error(api.simulate_get(f"{MCP}/nope"), 404, "NOT_FOUND")
    assert_error(api.simulate_delete(f"{MCP}/nope"), 404, "NOT_FOUND")
    put(api, "s", {"command": "x"})
    stale = api.simulate_get(f"{MCP}/s").headers["etag"]
    clock.tick()
    fresh = put(api, "s", {"command": "y"}, headers={"If-Match": stale})
    assert fresh.status_code == 200
    assert_error(put(api, "s", {"command": "z"}, headers={"If-Match": stale}), 412,
                 "PRECONDITION_FAILED")
    assert_error(api.simulate_delete(f"{MCP}/s", headers={"If-Match": stale}), 412,
                 "PRECONDITION_FAILED")
    assert api.simulate_get(f"{MCP}/s").json["command"] == "y"
    result = api.simulate_delete(f"{MCP}/s", headers={"If-Match": fresh.headers["etag"]})
    assert result.status_code == 204 and not result.content
    assert_error(api.simulate_get(f"{MCP}/s"), 404, "NOT_FOUND")
    # and it can be created again
    assert put(api, "s", {"command": "x"}).status_code == 201


def test_location_names_the_server_even_with_reserved_characters(
    api: falcon.testing.TestClient,
) -> None:
    result = api.simulate_put(f"{MCP}/a%3Fb%23c%20d", json={"command": "x"})
    assert result.status_code == 201, result.text
    assert result.json["serverId"] == "a?b#c d"
    location = result.headers["location"]
    assert "?" not in location and "#" not in location
    fetched = api.simulate_get(location)
    assert fetched.status_code == 200 and fetched.json == result.json


def test_list_by_server_id_and_pages(api: falcon.testing.TestClient) -> None:
    ids = ["zeta", "Alpha", "beta", "alpha", "_x", "b-1"]
    for server_id in ids:
        assert put(api, server_id, {"command": "c"}).status_code == 201
    everything = first_page(api, MCP)
    assert [s["serverId"] for s in everything] == sorted(ids)
    for limit in (1, 4, 6):
        items, pages = walk(api, MCP, limit)
        assert items == everything and pages == -(-len(ids) // limit)
    assert_error(api.simulate_get(MCP, params={"limit": "1001"}), 400, field="limit")


# -- import ---------------------------------------------------------------------------------------
def test_import_with_valid_and_invalid_entries(api: falcon.testing.TestClient) -> None:
    put(api, "existing", {"command": "old"})
    document = {"mcpServers": {
        "plain": {"command": "npx", "args": ["-y", "pkg"], "env": {"K": "v"}},
        "typed": {"transport_type": "stdio", "command": "uvx", "tool_name_prefix": "t_"},
        "remote": {"url": "https://r/mcp", "headers": {"A": "b"}},
        "nested": {"transport_type": "websocket",
                   "websocket_params": {"url": "wss://w", "open_timeout": 3}},
        "nested-implied": {"stdio_params": {"command": "run", "cwd": ""}},
        "existing": {"command": "new"},
        "no-command": {"transport_type": "stdio"},
        "bad-ws": {"transport_type": "websocket", "url": "http://w"},
        "unknown-field": {"command": "x", "colour": "blue"},
        "not-an-object": ["command", "x"],
        "bad-transport": {"transport_type": "smoke", "command": "x"},
        "neither": {"enabled": True},
    }}
    result = api.simulate_post(IMPORT, json=document)
    assert result.status_code == 200, result.text
    body = result.json
    assert set(body) == {"importedCount", "failedCount", "results"}
    assert (body["importedCount"], body["failedCount"]) == (6, 6)
    assert set(body["results"]) == set(document["mcpServers"])
    valid = {"plain", "typed", "remote", "nested", "nested-implied", "existing"}
    for server_id, outcome in body["results"].items():
        assert set(outcome) == {"status", "message"}, outcome
        assert isinstance(outcome["message"], str)
        if server_id in valid:
            assert outcome["status"] == "imported", (server_id, outcome)
        else:
            assert outcome["status"] == "failed", (server_id, outcome)
            assert outcome["message"], server_id
    assert body["results"]["existing"]["message"] == "replaced"
    assert body["results"]["plain"]["message"] == "created"
    stored = {s["serverId"]: s for s in first_page(api, MCP)}
    assert set(stored) == valid
    assert stored["plain"]["transportType"] == "stdio" and stored["plain"]["args"] == ["-y", "pkg"]
    assert stored["typed"]["toolNamePrefix"] == "t_"
    assert stored["remote"]["transportType"] == "streamable_http"
    assert stored["nested"]["transportType"] == "websocket"
    assert stored["nested"]["openTimeout"] == 3.0
    assert stored["nested-implied"]["command"] == "run" and stored["nested-implied"]["cwd"] is None
    assert stored["existing"]["command"] == "new"
    for server_id in stored:
        assert api.simulate_get(f"{MCP}/{server_id}").status_code == 200


def test_import_of_only_invalid_entries_and_of_nothing(api: falcon.testing.TestClient) -> None:
    result = api.simulate_post(IMPORT, json={"mcpServers": {"x": {}}})
    assert result.status_code == 200
    assert (result.json["importedCount"], result.json["failedCount"]) == (0, 1)
    empty = api.simulate_post(IMPORT, json={"mcpServers": {}})
    assert empty.status_code == 200
    assert empty.json == {"importedCount": 0, "failedCount": 0, "results": {}}
    assert first_page(api, MCP) == []


@pytest.mark.parametrize("document", [
    [], {}, {"servers": {"a": {"command": "x"}}}, {"mcpServers": []},
    {"mcpServers": "a"}, {"mcpServers": None},
    {"mcpServers": {"a": {"command": "x"}}, "extra": 1}, "mcpServers", 3, None,
])
def test_import_of_a_document_of_the_wrong_shape_is_400_and_writes_nothing(
    api: falcon.testing.TestClient, document: Any
) -> None:
    result = raw_post(api, "POST", IMPORT, json.dumps(document).encode())
    assert_error(result, 400)
    assert first_page(api, MCP) == []
