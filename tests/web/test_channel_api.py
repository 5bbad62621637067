"""The external-channel routes of api.md over falcon.testing (lmdb): status codes, bodies,
signatures over the raw bytes, the bearer-token exemption and the OpenAPI document."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import falcon.testing
import pytest

from domains.channel import signing
from tests.domains.channel_support import ENVELOPE, ROUTE

INGRESS = "/rest/api/channel-ingress/v1/messages"
EVENTS = "/rest/api/channel-ingress/v1/delivery-events"
BINDINGS = "/rest/api/channel-bindings"
SECRET = "gateway-secret"


def error_of(result: falcon.testing.Result, status: int, code: str | None = None) -> dict:
    assert result.status_code == status, (result.status_code, result.text)
    body = result.json
    assert set(body) == {"code", "detail", "field"}
    if code is not None:
        assert body["code"] == code, body
    return body


def put_binding(client: falcon.testing.TestClient, **over: Any) -> falcon.testing.Result:
    return client.simulate_put(BINDINGS, json={**ROUTE, "targetType": "AGENT",
                                               "agentId": "agent-1", **over})


def post_signed(client: falcon.testing.TestClient, path: str, raw: bytes, *,
                secret: str = SECRET, ts: int | None = None,
                headers: dict[str, str] | None = None) -> falcon.testing.Result:
    stamp = str(int(time.time()) if ts is None else ts)
    h = {"Content-Type": "application/json", "x-autobyteus-gateway-timestamp": stamp,
         "x-autobyteus-gateway-signature": signing.sign(secret, stamp, raw)}
    h.update(headers or {})
    return client.simulate_post(path, body=raw, headers=h)


@pytest.fixture
def signed_client(make_client: Callable[..., falcon.testing.TestClient]
                  ) -> falcon.testing.TestClient:
    return make_client(gateway_shared_secret=SECRET)


# -- signatures (7.8) ---------------------------------------------------------------------------
def test_the_published_vector() -> None:
    body = b'{"hello":"world"}'
    expected = "ac9d003806412379110f2e9b31cd56f56981cc340e53f9152afccd098d9fd0ea"
    assert signing.sign("secret-1", "1707350400", body) == expected
    assert signing.verify("secret-1", "1707350400", expected, body, now=1707350400) is None
    assert signing.verify("secret-1", "1707350400", expected.upper(), body,
                          now=1707350400 + 300) is None
    assert signing.verify("secret-1", "1707350400", expected, body, now=1707350701) == \
        "TIMESTAMP_OUT_OF_RANGE"
    assert signing.verify("secret-1", "1707350400", expected, body + b" ", now=1707350400) == \
        "INVALID_SIGNATURE"


def test_signature_failures_answer_401_with_their_code(
    signed_client: falcon.testing.TestClient
) -> None:
    raw = json.dumps(ENVELOPE).encode()
    now = str(int(time.time()))
    good = signing.sign(SECRET, now, raw)
    cases = [
        ({"x-autobyteus-gateway-timestamp": now}, "MISSING_SIGNATURE"),
        ({"x-autobyteus-gateway-signature": good}, "MISSING_TIMESTAMP"),
        ({"x-autobyteus-gateway-timestamp": "yesterday",
          "x-autobyteus-gateway-signature": good}, "INVALID_TIMESTAMP"),
        ({"x-autobyteus-gateway-timestamp": str(int(now) - 301),
          "x-autobyteus-gateway-signature": signing.sign(SECRET, str(int(now) - 301), raw)},
         "TIMESTAMP_OUT_OF_RANGE"),
        ({"x-autobyteus-gateway-timestamp": str(int(now) + 400),
          "x-autobyteus-gateway-signature": signing.sign(SECRET, str(int(now) + 400), raw)},
         "TIMESTAMP_OUT_OF_RANGE"),
        ({"x-autobyteus-gateway-timestamp": now,
          "x-autobyteus-gateway-signature": signing.sign("other", now, raw)},
         "INVALID_SIGNATURE"),
    ]
    for path in (INGRESS, EVENTS):
        for headers, code in cases:
            result = signed_client.simulate_post(
                path, body=raw, headers={"Content-Type": "application/json", **headers})
            error_of(result, 401, code)
    # nothing was processed by the refused requests
    assert signed_client.simulate_get("/rest/api/channel-inbox/AGENT/agent-1").json["items"] == []
    result = post_signed(signed_client, INGRESS, raw)
    assert result.status_code == 202 and result.json["disposition"] == "UNBOUND"


def test_the_signature_covers_the_exact_bytes(signed_client: falcon.testing.TestClient) -> None:
    # Spacing, key order and escapes that a re-serialisation would change.
    raw = ('{ "receivedAt":"2026-02-22T10:15:30.123Z",  "content" : "h\\u00e9llo \u2603",'
           '"peerType":"USER","externalMessageId":"m-1","peerId":"peer-1","accountId":"acc-1",'
           '"transport":"BUSINESS_API","provider":"WHATSAPP"}').encode()
    assert post_signed(signed_client, INGRESS, raw).status_code == 202
    tampered = raw.replace(b"m-1", b"m-2")
    stamp = str(int(time.time()))
    result = signed_client.simulate_post(INGRESS, body=tampered, headers={
        "Content-Type": "application/json", "x-autobyteus-gateway-timestamp": stamp,
        "x-autobyteus-gateway-signature": signing.sign(SECRET, stamp, raw)})
    error_of(result, 401, "INVALID_SIGNATURE")


def test_without_a_secret_ingress_is_not_signed(client: falcon.testing.TestClient) -> None:
    assert client.simulate_post(INGRESS, json=ENVELOPE).status_code == 202


# -- ingress ------------------------------------------------------------------------------------
def test_ingress_answers(make_client: Callable[..., falcon.testing.TestClient]) -> None:
    client = make_client()
    first = client.simulate_post(INGRESS, json={**ENVELOPE, "routingKey": "ignored",
                                                "threadId": None, "brandNew": [1]})
    assert first.status_code == 202
    key = "WHATSAPP:BUSINESS_API:acc-1:peer-1:direct::m-1"
    assert first.json == {"accepted": True, "duplicate": False, "disposition": "UNBOUND",
                          "bindingResolved": False, "idempotencyKey": key, "bindingId": None}
    again = client.simulate_post(INGRESS, json=ENVELOPE)  # unbound still: the key stays free
    assert again.status_code == 202 and again.json == first.json
    binding = put_binding(client).json
    replay = client.simulate_post(INGRESS, json=ENVELOPE)
    assert replay.json == {"accepted": True, "duplicate": False, "disposition": "ROUTED",
                           "bindingResolved": True, "idempotencyKey": key,
                           "bindingId": binding["id"]}
    later = client.simulate_post(INGRESS, json=ENVELOPE)
    assert later.json == {"accepted": True, "duplicate": True, "disposition": "DUPLICATE",
                          "bindingResolved": False, "idempotencyKey": key, "bindingId": None}
    routed = client.simulate_post(INGRESS, json={**ENVELOPE, "externalMessageId": "m-2"})
    assert routed.json == {"accepted": True, "duplicate": False, "disposition": "ROUTED",
                           "bindingResolved": True,
                           "idempotencyKey": "WHATSAPP:BUSINESS_API:acc-1:peer-1:direct::m-2",
                           "bindingId": binding["id"]}
    accepting = make_client(ingress_routed_disposition="ACCEPTED")
    put_binding(accepting)
    assert accepting.simulate_post(INGRESS, json=ENVELOPE).json["disposition"] == "ACCEPTED"


def test_ingress_field_errors(client: falcon.testing.TestClient) -> None:
    cases = [({"provider": "SMS"}, "provider"), ({"transport": "PERSONAL_SESSION",
                                                  "provider": "TELEGRAM"}, "transport"),
             ({"provider": "DISCORD", "peerId": "bob"}, "peerId"),
             ({"peerType": None}, "peerType"), ({"receivedAt": "soon"}, "receivedAt"),
             ({"externalMessageId": 12}, "externalMessageId")]
    for override, field in cases:
        body = error_of(client.simulate_post(INGRESS, json={**ENVELOPE, **override}), 400)
        assert body["field"] == field, (override, body)
    error_of(client.simulate_post(INGRESS, body=b"{nope",
                                  headers={"Content-Type": "application/json"}), 400,
             "MALFORMED_JSON")
    error_of(client.simulate_post(INGRESS, body=b"[]",
                                  headers={"Content-Type": "application/json"}), 400)
    error_of(client.simulate_post(INGRESS, body=b"{}", headers={"Content-Type": "text/plain"}),
             415)
    error_of(client.simulate_post(INGRESS, body=b"{" + b" " * (2 << 20) + b"}",
                                  headers={"Content-Type": "application/json"}), 413)


def test_delivery_events(client: falcon.testing.TestClient) -> None:
    body = {**ROUTE, "correlationMessageId": "m-1", "status": "SENT",
            "metadata": {"callbackIdempotencyKey": "k-1"}, "occurredAt": "2026-01-01T00:00:00Z"}
    result = client.simulate_post(EVENTS, json=body)
    assert result.status_code == 202
    assert result.json == {"accepted": True, "status": "SENT", "callbackIdempotencyKey": "k-1"}
    result = client.simulate_post(EVENTS, json={**body, "status": "delivered"})
    assert result.json["status"] == "DELIVERED"
    result = client.simulate_post(EVENTS, json={**body, "status": "SENT"})
    assert result.status_code == 202 and result.json["status"] == "DELIVERED"
    got = client.simulate_get("/rest/api/channel-delivery-events/k-1")
    assert got.status_code == 200 and got.json["status"] == "DELIVERED" and got.headers["etag"]
    no_key = client.simulate_post(EVENTS, json={**ROUTE, "correlationMessageId": "m-9",
                                                "status": "FAILED", "errorMessage": "blocked"})
    assert no_key.json["callbackIdempotencyKey"] == "m-9"
    assert client.simulate_get("/rest/api/channel-delivery-events/m-9").json["errorMessage"] == \
        "blocked"
    error_of(client.simulate_get("/rest/api/channel-delivery-events/none"), 404, "NOT_FOUND")
    assert error_of(client.simulate_post(EVENTS, json={**body, "status": "READ"}),
                    400)["field"] == "status"


# -- bindings -----------------------------------------------------------------------------------
def test_bindings_crud(client: falcon.testing.TestClient) -> None:
    created = put_binding(client, provider="whatsapp")
    assert created.status_code == 201
    b = created.json
    assert created.headers["location"] == f"{BINDINGS}/{b['id']}"
    assert b["provider"] == "WHATSAPP" and b["threadId"] is None and created.headers["etag"]
    replaced = put_binding(client, agentId="agent-2")
    assert replaced.status_code == 200 and replaced.json["id"] == b["id"]
    assert replaced.json["agentId"] == "agent-2"
    put_binding(client, peerId="peer-2")
    listed = client.simulate_get(BINDINGS, params={"limit": "1"}).json
    assert [x["peerId"] for x in listed["items"]] == ["peer-2"] and listed["nextCursor"]
    rest = client.simulate_get(BINDINGS, params={"cursor": listed["nextCursor"]}).json
    assert [x["peerId"] for x in rest["items"]] == ["peer-1"] and rest["nextCursor"] is None
    got = client.simulate_get(f"{BINDINGS}/{b['id']}")
    assert got.status_code == 200 and got.json == replaced.json
    error_of(client.simulate_delete(f"{BINDINGS}/{b['id']}", headers={"If-Match": '"x"'}), 412)
    assert client.simulate_delete(f"{BINDINGS}/{b['id']}",
                                  headers={"If-Match": got.headers["etag"]}).status_code == 204
    error_of(client.simulate_delete(f"{BINDINGS}/{b['id']}"), 404, "NOT_FOUND")
    error_of(client.simulate_get(f"{BINDINGS}/{b['id']}"), 404)


def test_binding_errors(client: falcon.testing.TestClient) -> None:
    assert error_of(put_binding(client, peerType="USER"), 400, "UNKNOWN_FIELD")["field"] == \
        "peerType"
    assert error_of(put_binding(client, provider="TELEGRAM", targetType="TEAM", agentId=None,
                                teamId="t"), 400)["field"] == "targetType"
    assert error_of(put_binding(client, targetMemberName="m"), 400)["field"] == \
        "targetMemberName"
    assert error_of(put_binding(client, agentId=None), 400)["field"] == "agentId"
    assert error_of(put_binding(client, provider="DISCORD", peerId="user:1", threadId="5"),
                    400)["field"] == "threadId"
    team = put_binding(client, targetType="team", agentId=None, teamId="t",
                       targetMemberName="lead")
    assert team.status_code == 201 and team.json["targetMemberName"] == "lead"


# -- inbox, receipts, replies, outbox -------------------------------------------------------------
def test_inbox_and_ack(client: falcon.testing.TestClient) -> None:
    put_binding(client)
    for i in range(3):
        client.simulate_post(INGRESS, json={**ENVELOPE, "externalMessageId": f"m-{i}",
                                            "content": f"c{i}"})
    page = client.simulate_get("/rest/api/channel-inbox/agent/agent-1",
                               params={"limit": "2"}).json
    assert [m["content"] for m in page["items"]] == ["c0", "c1"] and page["nextCursor"]
    first = page["items"][0]
    assert first["externalSource"]["externalMessageId"] == "m-0"
    assert first["targetType"] == "AGENT" and first["targetId"] == "agent-1"
    ack = client.simulate_post("/rest/api/channel-inbox/AGENT/agent-1/ack",
                               json={"messageIds": [m["id"] for m in page["items"]] + ["77"]})
    assert ack.status_code == 200 and ack.json == {"acknowledged": 2}
    left = client.simulate_get("/rest/api/channel-inbox/AGENT/agent-1").json
    assert [m["content"] for m in left["items"]] == ["c2"] and left["nextCursor"] is None
    error_of(client.simulate_post("/rest/api/channel-inbox/AGENT/agent-1/ack",
                                  json={"messageIds": "1"}), 400)
    error_of(client.simulate_get("/rest/api/channel-inbox/ROBOT/x"), 400)
    error_of(client.simulate_get("/rest/api/channel-inbox/AGENT/agent-1",
                                 params={"limit": "0"}), 400)


def test_timestamps_before_the_year_1000_read_back(client: falcon.testing.TestClient) -> None:
    # ISO 8601 years have four digits: the year 999 is written 0999, and what was accepted must
    # read back (it was once written "999-..." and the inbox then failed with a 500).
    put_binding(client)
    sent = client.simulate_post(INGRESS, json={**ENVELOPE, "externalMessageId": "old",
                                               "receivedAt": "0999-01-02T03:04:05Z"})
    assert sent.status_code in (200, 201, 202), sent.text
    inbox = client.simulate_get("/rest/api/channel-inbox/AGENT/agent-1")
    assert inbox.status_code == 200, inbox.text
    [message] = inbox.json["items"]
    assert "0999-01-02T03:04:05.000Z" in json.dumps(message)


def test_receipts_replies_and_outbox(make_client: Callable[..., falcon.testing.TestClient]
                                     ) -> None:
    client = make_client(callback_base_url="http://127.0.0.1:9")
    put_binding(client)
    client.simulate_post(INGRESS, json=ENVELOPE)
    turn = client.simulate_post("/rest/api/channel-receipts/turns", json={
        **ROUTE, "externalMessageId": "m-1", "turnId": "t-1", "agentId": "agent-1"})
    assert turn.status_code == 200
    assert (turn.json["turnId"], turn.json["ingressState"]) == ("t-1", "ROUTED")
    source = client.simulate_get("/rest/api/channel-sources",
                                 params={"agentId": "agent-1", "turnId": "t-1"})
    assert source.status_code == 200 and source.json["externalMessageId"] == "m-1"
    error_of(client.simulate_get("/rest/api/channel-sources", params={"teamId": "x"}), 404)
    error_of(client.simulate_get("/rest/api/channel-sources"), 400)

    def reply(**body: Any) -> falcon.testing.Result:
        return client.simulate_post("/rest/api/channel-replies",
                                    json={"agentId": "agent-1", **body})

    r = reply(replyText="hi")
    assert r.status_code == 202 and r.json == {"published": False, "reason": "TURN_ID_MISSING",
                                               "callbackIdempotencyKey": None}
    assert reply(turnId="t-1", replyText=" ").json["reason"] == "EMPTY_REPLY"
    assert reply(turnId="t-9", replyText="x").json["reason"] == "SOURCE_NOT_FOUND"
    r = reply(turnId="t-1", replyText="hello")
    assert r.json == {"published": True, "reason": None,
                      "callbackIdempotencyKey": "external-reply:agent-1:t-1"}
    assert reply(turnId="t-1", replyText="hello").json["reason"] == "DUPLICATE"
    error_of(reply(turnId="t-1", replyText="x", extra=1), 400, "UNKNOWN_FIELD")
    error_of(client.simulate_post("/rest/api/channel-replies", json={"turnId": "t"}), 400)
    event = client.simulate_get("/rest/api/channel-delivery-events/external-reply:agent-1:t-1")
    assert event.json["status"] == "PENDING"
    outbox = client.simulate_get("/rest/api/channel-outbox", params={"status": "pending"}).json
    assert len(outbox["items"]) == 1 and outbox["items"][0]["envelope"]["replyText"] == "hello"
    assert client.simulate_get("/rest/api/channel-outbox").json["items"] == outbox["items"]
    assert client.simulate_get("/rest/api/channel-outbox",
                               params={"status": "SENT"}).json["items"] == []
    error_of(client.simulate_get("/rest/api/channel-outbox", params={"status": "LOST"}), 400)
    unconfigured = make_client()
    assert unconfigured.simulate_post("/rest/api/channel-replies", json={
        "agentId": "a", "turnId": "t", "replyText": "x"}).json["reason"] == \
        "CALLBACK_NOT_CONFIGURED"


def test_bearer_token_spares_only_the_signed_ingress(
    make_client: Callable[..., falcon.testing.TestClient]
) -> None:
    client = make_client(api_token="tok", gateway_shared_secret=SECRET)
    assert post_signed(client, INGRESS, json.dumps(ENVELOPE).encode()).status_code == 202
    event = {**ROUTE, "correlationMessageId": "m-1", "status": "SENT"}
    assert post_signed(client, EVENTS, json.dumps(event).encode()).status_code == 202
    error_of(client.simulate_get(BINDINGS), 401, "UNAUTHORIZED")
    error_of(client.simulate_get("/rest/api/channel-inbox/AGENT/a"), 401)
    ok = client.simulate_get(BINDINGS, headers={"Authorization": "Bearer tok"})
    assert ok.status_code == 200


def test_openapi_documents_the_channel_routes(client: falcon.testing.TestClient) -> None:
    paths = client.simulate_get("/openapi.json").json["paths"]
    for path, method in [(BINDINGS, "put"), (INGRESS, "post"), (EVENTS, "post"),
                         ("/rest/api/channel-inbox/{targetType}/{targetId}/ack", "post"),
                         ("/rest/api/channel-delivery-events/{callbackIdempotencyKey}", "get"),
                         ("/rest/api/channel-outbox", "get"), ("/rest/api/channel-replies",
                                                               "post")]:
        assert method in paths[path], path
    assert paths[INGRESS]["post"]["security"] == []
    assert "401" in paths[INGRESS]["post"]["responses"]


# -- the shapes over HTTP -------------------------------------------------------------------------
def test_enums_in_any_case_and_the_limits_the_document_states(
    client: falcon.testing.TestClient
) -> None:
    put_binding(client, provider=" whatsapp ", transport="business_api", targetType="Agent")
    routed = client.simulate_post(INGRESS, json={**ENVELOPE, "peerType": "user",
                                                 "provider": "WhatsApp"})
    assert routed.status_code == 202 and routed.json["disposition"] == "ROUTED"
    assert routed.json["idempotencyKey"].startswith("WHATSAPP:BUSINESS_API:")
    for when in ("2026-02-22T10:15:30", "22/02/2026", " 2026-02-22T10:15:30Z"):
        assert error_of(client.simulate_post(INGRESS, json={**ENVELOPE, "receivedAt": when}),
                        400)["field"] == "receivedAt", when
    ack = "/rest/api/channel-inbox/AGENT/agent-1/ack"
    assert error_of(client.simulate_post(ack, json={"messageIds": ["1"] * 1001}),
                    400)["field"] == "messageIds"
    assert client.simulate_post(ack, json={"messageIds": ["x"] * 1000}).json == {
        "acknowledged": 0}
    assert error_of(client.simulate_post(ack, json={}), 400)["field"] == "messageIds"


def test_the_document_is_generated_from_the_shapes_and_the_capabilities(
    client: falcon.testing.TestClient
) -> None:
    from domains.channel.commands import AckMessages, PutBinding
    from domains.channel.models import CAPABILITIES, PROVIDERS, TRANSPORTS
    from domains.shapes import json_schema

    doc = client.simulate_get("/openapi.json").json
    components = doc["components"]["schemas"]
    assert components["PutBinding"] == json_schema(PutBinding)
    assert components["AckMessages"]["properties"]["messageIds"]["maxItems"] == 1000
    provider = components["PutBinding"]["properties"]["provider"]
    assert provider["x-enumCaseInsensitive"] == list(PROVIDERS)
    assert components["PutBinding"]["properties"]["transport"]["x-enumCaseInsensitive"] == \
        list(TRANSPORTS)
    capability = doc["paths"]["/rest/api/channel-capabilities"]["get"]["responses"]["200"]
    item = capability["content"]["application/json"]["schema"]["properties"]["items"]["items"]
    assert item["properties"]["provider"]["enum"] == list(PROVIDERS)
    assert len(client.simulate_get("/rest/api/channel-capabilities").json["items"]) == \
        len(CAPABILITIES)
    message = doc["paths"][INGRESS]["post"]["requestBody"]["content"]["application/json"]
    assert components[message["schema"]["$ref"].rsplit("/", 1)[1]]["additionalProperties"] \
        is True  # the gateway's envelope: unknown fields are ignored
    assert json_schema(AckMessages)["additionalProperties"] is False


def test_a_lone_surrogate_escape_is_refused_after_the_signature_and_stores_nothing(
    signed_client: falcon.testing.TestClient
) -> None:
    put_binding(signed_client)
    raw = json.dumps({**ENVELOPE, "content": "\ud800"}).encode()  # json.dumps writes \ud800
    assert b"\\ud800" in raw
    error_of(signed_client.simulate_post(INGRESS, body=raw, headers={
        "Content-Type": "application/json"}), 401, "MISSING_SIGNATURE")
    error_of(post_signed(signed_client, INGRESS, raw), 400, "MALFORMED_JSON")
    inbox = signed_client.simulate_get("/rest/api/channel-inbox/AGENT/agent-1").json
    assert inbox["items"] == []
    assert post_signed(signed_client, INGRESS, json.dumps(ENVELOPE).encode()).json[
        "disposition"] == "ROUTED"
