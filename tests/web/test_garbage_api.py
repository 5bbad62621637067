"""No request gets a 500: garbage for every field of every POST/PATCH/PUT body of the prompts,
definitions, MCP, token usage and artifacts routes answers 4xx with the error body, and so do
unknown fields and bodies that are not objects. Also /health and /openapi.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import falcon.testing
import pytest

from engine import open_store
from tests.web.api_support import assert_error, raw_post
from web.app import create_app
from web.settings import Settings

# JSON literals (raw, so that huge and infinite numbers reach the server as such)
HUGE_INT = "1" + "0" * 400
INF = "1e400"
NEG_INF = "-1e400"
LONE_SURROGATE = '"\\ud800"'

WRONG: dict[str, list[str]] = {
    # a required, non-blank string
    "str": ["1", "1.5", "true", "false", "[]", '["x"]', "{}", '{"a": "b"}', HUGE_INT, INF,
            '""', '"   "', "null"],
    # a string or null
    "nstr": ["1", "-1", "true", "[]", '["x"]', "{}", HUGE_INT, INF],
    # an integer >= 0
    "count": ['"10"', "1.5", "-1", "-1000000", "true", "[]", "{}", "null", HUGE_INT,
              "-" + HUGE_INT, INF, NEG_INF, "1e20"],
    # a number >= 0, optional
    "cost": ['"1"', "-1", "-0.5", "true", "[]", "{}", HUGE_INT, INF, NEG_INF, "1e300"],
    # a boolean
    "bool": ['"true"', "1", "0", "[]", "{}", HUGE_INT],
    # a list of strings
    "list": ['"a,b"', '"x"', "1", "true", "{}", '{"a": "b"}', "[1]", "[null]", '[["x"]]',
             "[{}]", HUGE_INT],
    # an object of strings
    "map": ['"a=b"', "1", "true", "[]", '["a"]', '{"a": 1}', '{"a": null}', '{"a": ["b"]}',
            '{"a": {}}', HUGE_INT],
    # team nodes
    "nodes": ['"lead"', "1", "{}", "[1]", '["lead"]', "[{}]", "[[]]", "[null]",
              '[{"memberName": 1, "referenceId": "1", "referenceType": "AGENT"}]',
              '[{"memberName": "lead", "referenceId": [], "referenceType": "AGENT"}]',
              '[{"memberName": "lead", "referenceId": "1", "referenceType": 1}]',
              '[{"memberName": "lead", "referenceId": "1", "referenceType": "AGENT", "x": 1}]'],
    # a positive number of seconds, optional
    "seconds": ['"10"', "0", "-1", "true", "[]", "{}", HUGE_INT, INF, NEG_INF],
    # an enum given as a string
    "role": ['"system"', '"admin"', '""', "1", "[]", "null", "true"],
    "artifact_type": ['"document"', '""', "1", "[]", "true", "{}"],
    "transport": ['"ftp"', '""', "1", "[]", "true", "{}"],
    "ws_url": ['"http://x"', '"ws:/x"', '"wss://"', "1", "[]", "null", '""'],
    # the import document's map of servers
    "servers": ["[]", '"x"', "1", "true", "null", HUGE_INT],
}
NON_OBJECTS = ["[]", "[{}]", '"text"', "1", "-1", HUGE_INT, INF, "true", "false", "null", '""']

PROMPT = {"name": "str", "category": "str", "promptContent": "str", "description": "nstr",
          "suitableForModels": "nstr"}
PROMPT_PATCH = {"name": "str", "category": "str", "promptContent": "str",
                "description": "nstr", "suitableForModels": "nstr", "isActive": "bool"}
LISTS = ("toolNames", "inputProcessorNames", "llmResponseProcessorNames",
         "systemPromptProcessorNames", "toolExecutionResultProcessorNames",
         "toolInvocationPreprocessorNames", "lifecycleProcessorNames", "skillNames")
AGENT = {"name": "str", "role": "str", "description": "str", "avatarUrl": "nstr",
         **dict.fromkeys(LISTS, "list"), "systemPromptCategory": "str",
         "systemPromptName": "str"}
TEAM = {"name": "str", "description": "str", "role": "nstr", "avatarUrl": "nstr",
        "coordinatorMemberName": "str", "nodes": "nodes"}
STDIO = {"transportType": "transport", "enabled": "bool", "toolNamePrefix": "nstr",
         "command": "str", "args": "list", "env": "map", "cwd": "nstr"}
HTTP = {"url": "str", "token": "nstr", "headers": "map"}
WEBSOCKET = {"url": "ws_url", "headers": "map", "subprotocols": "list", "origin": "nstr",
             "openTimeout": "seconds", "pingInterval": "seconds", "pingTimeout": "seconds",
             "verifyTls": "bool", "caFile": "nstr", "clientCert": "nstr", "clientKey": "nstr"}
RECORD = {"agentId": "str", "role": "role", "tokenCount": "count", "cost": "cost",
          "llmModel": "nstr"}
CONVERSATION = {"agentId": "str", "llmModel": "nstr", "promptTokens": "count",
                "completionTokens": "count", "promptCost": "cost", "completionCost": "cost"}
ARTIFACT = {"agentId": "str", "path": "str", "type": "artifact_type", "workspaceRoot": "nstr",
            "url": "nstr"}

#: (name, method, path, a valid body, the kind of each field that may be sent)
ROUTES: list[tuple[str, str, str, dict[str, Any], dict[str, str]]] = [
    ("prompt-create", "POST", "/rest/api/prompts",
     {"name": "n", "category": "c", "promptContent": "p"}, PROMPT),
    ("prompt-patch", "PATCH", "/rest/api/prompts/1", {"description": "d"}, PROMPT_PATCH),
    ("prompt-revision", "POST", "/rest/api/prompts/1/revisions", {"promptContent": "p"},
     {"promptContent": "str"}),
    ("agent-create", "POST", "/rest/api/agent-definitions",
     {"name": "agent-x", "role": "r", "description": "d", "systemPromptCategory": "cat",
      "systemPromptName": "sys"}, AGENT),
    ("agent-patch", "PATCH", "/rest/api/agent-definitions/1", {"role": "r"}, AGENT),
    ("team-create", "POST", "/rest/api/agent-team-definitions",
     {"name": "team-x", "description": "d", "coordinatorMemberName": "lead",
      "nodes": [{"memberName": "lead", "referenceId": "1", "referenceType": "AGENT"}]}, TEAM),
    ("team-patch", "PATCH", "/rest/api/agent-team-definitions/1", {"description": "d"}, TEAM),
    ("mcp-put-stdio", "PUT", "/rest/api/mcp-servers/fresh",
     {"transportType": "stdio", "command": "c"}, STDIO),
    ("mcp-put-http", "PUT", "/rest/api/mcp-servers/fresh",
     {"transportType": "streamable_http", "url": "http://h"}, HTTP),
    ("mcp-put-websocket", "PUT", "/rest/api/mcp-servers/fresh",
     {"transportType": "websocket", "url": "ws://h"}, WEBSOCKET),
    ("mcp-import", "POST", "/rest/api/mcp-servers/import", {"mcpServers": {}},
     {"mcpServers": "servers"}),
    ("usage-record", "POST", "/rest/api/token-usage/records",
     {"agentId": "a", "role": "user", "tokenCount": 1}, RECORD),
    ("usage-conversation", "POST", "/rest/api/token-usage/conversations",
     {"agentId": "a", "promptTokens": 1, "completionTokens": 1}, CONVERSATION),
    ("artifact-create", "POST", "/rest/api/agent-artifacts", {"agentId": "a", "path": "p"},
     ARTIFACT),
]
ROUTE_BY_NAME = {r[0]: r for r in ROUTES}


def _cases() -> Iterator[Any]:
    for name, _, _, _, fields in ROUTES:
        for field, kind in fields.items():
            for literal in WRONG[kind]:
                yield pytest.param(name, field, literal, id=f"{name}-{field}-{literal[:24]}")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[falcon.testing.TestClient]:
    store = open_store("lmdb", data_dir=str(tmp_path_factory.mktemp("garbage")))
    client = falcon.testing.TestClient(create_app(store, Settings(provider="lmdb")))
    for name in ("prompt-create", "agent-create", "team-create"):
        _, _, path, body, _ = ROUTE_BY_NAME[name]
        if name == "prompt-create":
            body = {"name": "sys", "category": "cat", "promptContent": "p"}
        else:  # a name of its own: the route's valid body must stay creatable
            body = dict(body, name="seed")
        assert client.simulate_post(path, json=body).status_code == 201
    try:
        yield client
    finally:
        store.close()


def _send(api: falcon.testing.TestClient, name: str, body: bytes) -> falcon.testing.Result:
    _, method, path, _, _ = ROUTE_BY_NAME[name]
    return raw_post(api, method, path, body)


def _with(valid: dict[str, Any], field: str, literal: str) -> bytes:
    """``valid`` with ``field`` set to the raw JSON ``literal``."""
    members = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in valid.items() if k != field]
    members.append(f"{json.dumps(field)}: {literal}")
    return ("{" + ", ".join(members) + "}").encode()


@pytest.mark.parametrize("name", sorted(ROUTE_BY_NAME))
def test_the_valid_body_of_each_route_is_accepted(api: falcon.testing.TestClient,
                                                  name: str) -> None:
    """The bodies the garbage is put into are valid, so each 400 below is the garbage's."""
    _, _, _, valid, _ = ROUTE_BY_NAME[name]
    result = _send(api, name, json.dumps(valid).encode())
    assert result.status_code in (200, 201), result.text
    if name.startswith("mcp-put"):
        assert api.simulate_delete("/rest/api/mcp-servers/fresh").status_code == 204


@pytest.mark.parametrize("name,field,literal", list(_cases()))
def test_a_wrong_value_in_any_field_is_a_4xx_with_the_error_body(
    api: falcon.testing.TestClient, name: str, field: str, literal: str
) -> None:
    _, _, _, valid, _ = ROUTE_BY_NAME[name]
    result = _send(api, name, _with(valid, field, literal))
    assert 400 <= result.status_code < 500, (result.status_code, result.text)
    assert_error(result, result.status_code)


@pytest.mark.parametrize("name", sorted(ROUTE_BY_NAME))
@pytest.mark.parametrize("literal", NON_OBJECTS)
def test_a_body_that_is_not_an_object_is_400(api: falcon.testing.TestClient, name: str,
                                             literal: str) -> None:
    assert_error(_send(api, name, literal.encode()), 400)


@pytest.mark.parametrize("name", sorted(ROUTE_BY_NAME))
def test_an_unknown_field_is_400_naming_it(api: falcon.testing.TestClient, name: str) -> None:
    _, _, _, valid, _ = ROUTE_BY_NAME[name]
    body = dict(valid, notAField=1)
    assert_error(_send(api, name, json.dumps(body).encode()), 400, field="notAField")


@pytest.mark.parametrize("name", sorted(ROUTE_BY_NAME))
@pytest.mark.parametrize("body", [b"{", b"", b"  ", b'{"a": 1,}', b"\xff\xfe",
                                  b'{"a": NaN}', b'{"a": Infinity}', b"[" * 5000 + b"]" * 5000,
                                  b'{"a": 1} trailing'])
def test_malformed_json_is_400(api: falcon.testing.TestClient, name: str, body: bytes) -> None:
    assert_error(_send(api, name, body), 400)


@pytest.mark.parametrize("name", sorted(ROUTE_BY_NAME))
def test_a_lone_surrogate_in_any_string_is_400_not_500(api: falcon.testing.TestClient,
                                                       name: str) -> None:
    _, _, _, valid, fields = ROUTE_BY_NAME[name]
    for field in fields:
        result = _send(api, name, _with(valid, field, LONE_SURROGATE))
        assert_error(result, 400)
    # as an object key too
    body = json.dumps(valid)[:-1].encode() + b', "\\udfff": 1}'
    assert_error(_send(api, name, body), 400)
    # a proper surrogate pair is a character like any other
    if "agentId" in fields:
        body = _with(valid, "agentId", '"\\ud83d\\ude00"')
        result = _send(api, name, body)
        assert result.status_code == 201, result.text
        answer = result.json[0] if isinstance(result.json, list) else result.json
        assert answer["agentId"] == "\U0001f600"


def test_no_body_at_all_and_wrong_content_type(api: falcon.testing.TestClient) -> None:
    for _name, method, path, valid, _ in ROUTES:
        assert_error(api.simulate_request(method, path), 415)
        assert_error(api.simulate_request(method, path, body=json.dumps(valid),
                                          headers={"Content-Type": "text/plain"}), 415)


# -- the service routes --------------------------------------------------------------------------
def test_health(api: falcon.testing.TestClient) -> None:
    result = api.simulate_get("/health")
    assert result.status_code == 200
    assert result.json["status"] == "ok" and result.json["provider"] == "lmdb"


def test_openapi_describes_every_route_of_these_areas(api: falcon.testing.TestClient) -> None:
    result = api.simulate_get("/openapi.json")
    assert result.status_code == 200
    document = result.json
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    expected = {
        "/health": {"get"}, "/openapi.json": {"get"},
        "/rest/api/prompts": {"get", "post"},
        "/rest/api/prompts/{id}": {"get", "patch", "delete"},
        "/rest/api/prompts/{id}/revisions": {"post"},
        "/rest/api/prompts/{id}/activate": {"post"},
        "/rest/api/prompt-categories": {"get"}, "/rest/api/prompt-templates": {"get"},
        "/rest/api/agent-definitions": {"get", "post"},
        "/rest/api/agent-definitions/{id}": {"get", "patch", "delete"},
        "/rest/api/agent-team-definitions": {"get", "post"},
        "/rest/api/agent-team-definitions/{id}": {"get", "patch", "delete"},
        "/rest/api/mcp-servers": {"get"},
        "/rest/api/mcp-servers/import": {"post"},
        "/rest/api/token-usage/records": {"get", "post"},
        "/rest/api/token-usage/conversations": {"post"},
        "/rest/api/token-usage/total-cost": {"get"},
        "/rest/api/token-usage/statistics": {"get"},
        "/rest/api/agent-artifacts": {"get", "post"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    mcp_items = [p for p in paths if p.startswith("/rest/api/mcp-servers/{")]
    assert len(mcp_items) == 1
    assert {"get", "put", "delete"} <= set(paths[mcp_items[0]])
