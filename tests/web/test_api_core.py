"""What every route shares: the error shape, body rules, auth, health and the OpenAPI document."""

from __future__ import annotations

import json

import falcon.testing
import pytest

from web.openapi import documented_routes, served_routes

PROMPT = {"name": "greeter", "category": "chat", "promptContent": "Hello"}


def assert_error(result: falcon.testing.Result, status: int, code: str | None = None) -> dict:
    assert result.status_code == status, result.text
    body = result.json
    assert set(body) == {"code", "detail", "field"}, body
    assert body["code"] == body["code"].upper() and body["detail"]
    if code is not None:
        assert body["code"] == code, body
    return body


def test_health_names_the_provider(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/health")
    assert result.status_code == 200
    assert result.json["status"] == "ok" and result.json["provider"] == "lmdb"


def test_every_served_route_is_documented_and_every_documented_route_exists(
    client: falcon.testing.TestClient,
) -> None:
    document = client.simulate_get("/openapi.json").json
    assert document["openapi"].startswith("3.1")
    served = served_routes(client.app)
    documented = documented_routes(document)
    assert served == documented, {
        "served but not documented": sorted(served - documented),
        "documented but not served": sorted(documented - served),
    }
    # and the contract's routes are among them
    for route in [("/health", "GET"), ("/openapi.json", "GET"), ("/rest/api/prompts", "POST"),
                  ("/rest/api/prompts/{id}", "PATCH"), ("/rest/api/token-usage/statistics", "GET"),
                  ("/rest/api/mcp-servers/import", "POST"), ("/rest/api/agent-artifacts", "GET")]:
        assert route in served, route


def test_unknown_route_and_method(client: falcon.testing.TestClient) -> None:
    assert_error(client.simulate_get("/rest/api/nothing-here"), 404, "NOT_FOUND")
    result = client.simulate_put("/health")
    assert_error(result, 405)
    assert "GET" in result.headers.get("allow", "")


def test_wrong_content_type_is_415(client: falcon.testing.TestClient) -> None:
    result = client.simulate_post(
        "/rest/api/prompts", body=json.dumps(PROMPT), headers={"Content-Type": "text/plain"}
    )
    assert_error(result, 415)
    result = client.simulate_post("/rest/api/prompts", body=json.dumps(PROMPT))
    assert_error(result, 415)


@pytest.mark.parametrize(
    "body",
    [b"{", b"", b"[1, 2", b"\xff\xfe{}", b'{"name": NaN}', b"[" * 100_000 + b"]" * 100_000],
)
def test_malformed_json_is_400(client: falcon.testing.TestClient, body: bytes) -> None:
    result = client.simulate_post(
        "/rest/api/prompts", body=body, headers={"Content-Type": "application/json"}
    )
    assert_error(result, 400)


def test_non_object_body_is_400(client: falcon.testing.TestClient) -> None:
    result = client.simulate_post("/rest/api/prompts", json=[PROMPT])
    assert_error(result, 400)


def test_oversize_body_is_413_and_stores_nothing(make_client) -> None:
    client = make_client(max_body_bytes=4096)
    big = dict(PROMPT, promptContent="x" * 5000)
    assert_error(client.simulate_post("/rest/api/prompts", json=big), 413)
    assert client.simulate_get("/rest/api/prompts").json["items"] == []
    assert client.simulate_post("/rest/api/prompts", json=PROMPT).status_code == 201


def test_unknown_fields_are_rejected(client: falcon.testing.TestClient) -> None:
    body = assert_error(
        client.simulate_post("/rest/api/prompts", json=dict(PROMPT, promptContnet="typo")), 400
    )
    assert body["field"] == "promptContnet"
    assert client.simulate_get("/rest/api/prompts").json["items"] == []


def test_bearer_token_guards_the_api_but_not_health(make_client) -> None:
    client = make_client(api_token="s3cret")
    assert client.simulate_get("/health").status_code == 200
    assert client.simulate_get("/openapi.json").status_code == 200
    result = client.simulate_get("/rest/api/prompts")
    assert_error(result, 401, "UNAUTHORIZED")
    assert "s3cret" not in result.text
    assert_error(
        client.simulate_get("/rest/api/prompts", headers={"Authorization": "Bearer wrong"}), 401
    )
    ok = client.simulate_get("/rest/api/prompts", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def test_etag_and_if_match(client: falcon.testing.TestClient) -> None:
    created = client.simulate_post("/rest/api/prompts", json=PROMPT)
    assert created.status_code == 201
    assert created.headers["location"].endswith("/rest/api/prompts/" + created.json["id"])
    url = "/rest/api/prompts/" + created.json["id"]
    got = client.simulate_get(url)
    etag = got.headers["etag"]
    assert etag
    assert_error(
        client.simulate_patch(url, json={"description": "d"}, headers={"If-Match": '"stale"'}),
        412, "PRECONDITION_FAILED",
    )
    ok = client.simulate_patch(url, json={"description": "d"}, headers={"If-Match": etag})
    assert ok.status_code == 200 and ok.json["description"] == "d"
    assert_error(client.simulate_delete(url, headers={"If-Match": etag}), 412)
    assert client.simulate_delete(url, headers={"If-Match": ok.headers["etag"]}).status_code == 204
    assert_error(client.simulate_get(url), 404, "NOT_FOUND")


def test_list_pagination_yields_every_item_once(client: falcon.testing.TestClient) -> None:
    for i in range(7):
        body = dict(PROMPT, name=f"p{i}")
        assert client.simulate_post("/rest/api/prompts", json=body).status_code == 201
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        page = client.simulate_get("/rest/api/prompts", params=params).json
        seen += [p["id"] for p in page["items"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 7 and pages == 3
    assert_error(client.simulate_get("/rest/api/prompts", params={"limit": "0"}), 400)
    assert_error(client.simulate_get("/rest/api/prompts", params={"limit": "1001"}), 400)
    assert_error(client.simulate_get("/rest/api/prompts", params={"cursor": "!!bad"}), 400)
