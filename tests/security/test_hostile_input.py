"""Hostile request bodies and credentials, in-process (falcon.testing over an lmdb store):
oversized bodies (413, nothing stored), deep nesting and invalid UTF-8 (400), bad and replayed
gateway signatures (401 codes, TIMESTAMP_OUT_OF_RANGE, DUPLICATE), and timing-safe comparisons."""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

import falcon.testing
import pytest

from domains.channel import signing
from web.app import create_app
from web.openapi import build_document
from web.settings import Settings

TOKEN = "token-under-test"
SECRET = "gateway-secret-under-test"
LIMIT = 2048
INGRESS = "/rest/api/channel-ingress/v1/messages"
EVENTS = "/rest/api/channel-ingress/v1/delivery-events"
ROUTE = {"provider": "WHATSAPP", "transport": "BUSINESS_API", "accountId": "acc-1",
         "peerId": "peer-1"}
ENVELOPE = {**ROUTE, "peerType": "USER", "externalMessageId": "m-1", "content": "hello",
            "receivedAt": "2026-02-22T10:15:30.123Z"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Api:
    def __init__(self, make_store: Any, **settings: Any) -> None:
        self.store = make_store.open("lmdb")
        options = {"api_token": TOKEN, "gateway_shared_secret": SECRET,
                   "max_body_bytes": LIMIT, **settings}
        self.app = create_app(self.store, Settings(provider="lmdb", **options))
        self.client = falcon.testing.TestClient(self.app)

    def keys(self) -> list[tuple[bytes, bytes]]:
        with self.store.begin() as txn:
            return list(txn.scan())

    def post_signed(self, path: str, raw: bytes, ts: int | None = None,
                    secret: str = SECRET, **headers: str) -> falcon.testing.Result:
        stamp = str(int(time.time()) if ts is None else ts)
        h = {"Content-Type": "application/json", "x-autobyteus-gateway-timestamp": stamp,
             "x-autobyteus-gateway-signature": signing.sign(secret, stamp, raw), **headers}
        return self.client.simulate_post(path, body=raw, headers=h)

    def resource(self, path: str) -> Any:
        return self.app._router.find(path)[0]  # type: ignore[attr-defined]


@pytest.fixture
def api(make_store: Any) -> Api:
    return Api(make_store)


def error(result: falcon.testing.Result, status: int, code: str | None = None) -> dict:
    assert result.status_code == status, (result.status_code, result.text)
    body = result.json
    assert set(body) == {"code", "detail", "field"}, body
    if code is not None:
        assert body["code"] == code, body
    return body


def body_routes() -> list[tuple[str, str]]:
    """(METHOD, concrete path) of every documented operation that takes a JSON body."""
    from web.api import resource_modules

    doc = build_document(resource_modules())
    found = []
    for template, operations in doc["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                path = (template.replace("{targetType}", "AGENT")
                        .replace("{", "").replace("}", ""))
                found.append((method.upper(), path))
    return sorted(found)


BODY_ROUTES = body_routes()


def test_every_body_route_is_covered() -> None:
    assert len(BODY_ROUTES) >= 15, BODY_ROUTES


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_an_oversized_body_is_413_and_stores_nothing(api: Api, method: str, path: str) -> None:
    before = api.keys()
    # Valid JSON, just too big: the limit is checked before anything is parsed or stored.
    raw = json.dumps({**ENVELOPE, "name": "n", "content": "x" * (LIMIT + 1)}).encode()
    headers = {"Content-Type": "application/json", **AUTH}
    if path in (INGRESS, EVENTS):
        stamp = str(int(time.time()))
        headers.update({"x-autobyteus-gateway-timestamp": stamp,
                        "x-autobyteus-gateway-signature": signing.sign(SECRET, stamp, raw)})
    result = api.client.simulate_request(method, path, body=raw, headers=headers)
    error(result, 413, "PAYLOAD_TOO_LARGE")
    assert api.keys() == before


def test_a_body_exactly_at_the_limit_is_read(api: Api) -> None:
    body = {"name": "n", "category": "c", "promptContent": ""}
    pad = LIMIT - len(json.dumps(body).encode())
    body["promptContent"] = "x" * pad
    raw = json.dumps(body).encode()
    assert len(raw) == LIMIT
    result = api.client.simulate_post("/rest/api/prompts", body=raw,
                                      headers={"Content-Type": "application/json", **AUTH})
    assert result.status_code == 201, result.text


@pytest.mark.parametrize("path", ["/rest/api/prompts", INGRESS])
@pytest.mark.parametrize("depth", [200, 5000, 100_000])
def test_deep_nesting_is_400_not_a_crash(make_store: Any, path: str, depth: int) -> None:
    api = Api(make_store, max_body_bytes=1 << 20)
    before = api.keys()
    raw = b"[" * depth + b"]" * depth
    nested_object = b'{"a":' * depth + b"1" + b"}" * depth
    for body in (raw, nested_object):
        if path == INGRESS:
            result = api.post_signed(path, body)
        else:
            result = api.client.simulate_post(path, body=body, headers={
                "Content-Type": "application/json", **AUTH})
        # Shallow nesting parses and is then refused as the wrong shape (400 too).
        error(result, 400)
    assert api.keys() == before


@pytest.mark.parametrize("raw", [
    b'{"name": "\xff\xfe", "category": "c", "promptContent": "p"}',
    b'{"name": "\xc3\x28", "category": "c", "promptContent": "p"}',   # a broken 2-byte sequence
    b'{"name": "\xed\xa0\x80", "category": "c", "promptContent": "p"}',  # an encoded surrogate
    b"\xef\xbb\xbf\xff",
])
def test_invalid_utf8_is_400(api: Api, raw: bytes) -> None:
    before = api.keys()
    result = api.client.simulate_post("/rest/api/prompts", body=raw,
                                      headers={"Content-Type": "application/json", **AUTH})
    error(result, 400, "MALFORMED_JSON")
    result = api.post_signed(INGRESS, raw)
    error(result, 400, "MALFORMED_JSON")
    assert api.keys() == before


@pytest.mark.parametrize("raw", [b"NaN", b'{"a": Infinity}', b'{"a": 1', b"", b"   ",
                                 b'{"a": "\\ud800"}'])
def test_malformed_json_is_400(api: Api, raw: bytes) -> None:
    result = api.client.simulate_post("/rest/api/prompts", body=raw,
                                      headers={"Content-Type": "application/json", **AUTH})
    assert result.status_code == 400, result.text
    assert set(result.json) == {"code", "detail", "field"}


def test_another_content_type_is_415(api: Api) -> None:
    result = api.client.simulate_post("/rest/api/prompts", body=b"name=x",
                                      headers={"Content-Type": "application/x-www-form-urlencoded",
                                               **AUTH})
    error(result, 415, "UNSUPPORTED_MEDIA_TYPE")


# -- signatures and replays ---------------------------------------------------------------------
@pytest.mark.parametrize(("headers", "code"), [
    ({}, "MISSING_SIGNATURE"),
    ({"x-autobyteus-gateway-signature": "00" * 32}, "MISSING_TIMESTAMP"),
    ({"x-autobyteus-gateway-signature": "00" * 32,
      "x-autobyteus-gateway-timestamp": "yesterday"}, "INVALID_TIMESTAMP"),
    ({"x-autobyteus-gateway-signature": "00" * 32,
      "x-autobyteus-gateway-timestamp": "9" * 40}, "INVALID_TIMESTAMP"),
    ({"x-autobyteus-gateway-signature": "00" * 32,
      "x-autobyteus-gateway-timestamp": "-5"}, "INVALID_TIMESTAMP"),
    ({"x-autobyteus-gateway-signature": "not hex at all \u00e9",
      "x-autobyteus-gateway-timestamp": "NOW"}, "INVALID_SIGNATURE"),
    ({"x-autobyteus-gateway-signature": "00" * 32,
      "x-autobyteus-gateway-timestamp": "NOW"}, "INVALID_SIGNATURE"),
])
@pytest.mark.parametrize("path", [INGRESS, EVENTS])
def test_bad_signatures_are_401_with_their_code(api: Api, path: str, headers: dict[str, str],
                                                code: str) -> None:
    raw = json.dumps(ENVELOPE).encode()
    h = {"Content-Type": "application/json"}
    for name, value in headers.items():
        h[name] = str(int(time.time())) if value == "NOW" else value
    before = api.keys()
    error(api.client.simulate_post(path, body=raw, headers=h), 401, code)
    assert api.keys() == before


def test_a_signature_of_another_secret_or_body_is_401(api: Api) -> None:
    raw = json.dumps(ENVELOPE).encode()
    error(api.post_signed(INGRESS, raw, secret="wrong"), 401, "INVALID_SIGNATURE")
    stamp = str(int(time.time()))
    result = api.client.simulate_post(INGRESS, body=raw + b" ", headers={
        "Content-Type": "application/json", "x-autobyteus-gateway-timestamp": stamp,
        "x-autobyteus-gateway-signature": signing.sign(SECRET, stamp, raw)})
    error(result, 401, "INVALID_SIGNATURE")


def _bind(api: Api) -> None:
    result = api.client.simulate_put("/rest/api/channel-bindings", headers=AUTH,
                                     json={**ROUTE, "targetType": "AGENT", "agentId": "agent-1"})
    assert result.status_code == 201, result.text


def test_a_replay_within_the_window_is_a_duplicate_not_a_second_message(api: Api) -> None:
    _bind(api)
    raw = json.dumps(ENVELOPE).encode()
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "x-autobyteus-gateway-timestamp": stamp,
               "x-autobyteus-gateway-signature": signing.sign(SECRET, stamp, raw)}
    first = api.client.simulate_post(INGRESS, body=raw, headers=headers)
    assert first.status_code == 202 and first.json["disposition"] == "ROUTED", first.text
    for _ in range(3):  # the exact captured request, sent again
        again = api.client.simulate_post(INGRESS, body=raw, headers=headers)
        assert again.status_code == 202, again.text
        assert again.json["disposition"] == "DUPLICATE" and again.json["duplicate"] is True
        assert again.json["idempotencyKey"] == first.json["idempotencyKey"]
    inbox = api.client.simulate_get("/rest/api/channel-inbox/AGENT/agent-1", headers=AUTH)
    assert len(inbox.json["items"]) == 1


def test_a_replay_after_the_window_is_timestamp_out_of_range(api: Api) -> None:
    _bind(api)
    raw = json.dumps(ENVELOPE).encode()
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "x-autobyteus-gateway-timestamp": stamp,
               "x-autobyteus-gateway-signature": signing.sign(SECRET, stamp, raw)}
    assert api.client.simulate_post(INGRESS, body=raw, headers=headers).status_code == 202
    # The same captured bytes and headers, replayed 301 s later by the server's clock.
    ingress = api.resource(INGRESS)
    ingress.clock = lambda: int(stamp) + signing.MAX_SKEW_S + 1
    before = api.keys()
    error(api.client.simulate_post(INGRESS, body=raw, headers=headers), 401,
          "TIMESTAMP_OUT_OF_RANGE")
    # ... and a new message signed with an old timestamp is refused too.
    other = json.dumps({**ENVELOPE, "externalMessageId": "m-2"}).encode()
    error(api.post_signed(INGRESS, other, ts=int(stamp) - 3600), 401, "TIMESTAMP_OUT_OF_RANGE")
    assert api.keys() == before


# -- timing-safe comparisons --------------------------------------------------------------------
class CompareSpy:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []
        self._real = hmac.compare_digest

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((a, b))
        return self._real(a, b)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> CompareSpy:
    spy = CompareSpy()
    monkeypatch.setattr(hmac, "compare_digest", spy)
    return spy


@pytest.mark.parametrize("given", [None, "Bearer wrong", f"Bearer {TOKEN}x", f"Bearer {TOKEN}"])
def test_the_bearer_token_is_compared_with_compare_digest(api: Api, spy: CompareSpy,
                                                          given: str | None) -> None:
    headers = {} if given is None else {"Authorization": given}
    result = api.client.simulate_get("/rest/api/prompts", headers=headers)
    assert result.status_code == (200 if given == f"Bearer {TOKEN}" else 401), result.text
    expected = f"Bearer {TOKEN}".encode()
    assert (expected in {a for a, _ in spy.calls} | {b for _, b in spy.calls}), spy.calls
    assert len(spy.calls) == 1


def test_the_gateway_signature_is_compared_with_compare_digest(api: Api, spy: CompareSpy
                                                               ) -> None:
    raw = json.dumps(ENVELOPE).encode()
    stamp = str(int(time.time()))
    good = signing.sign(SECRET, stamp, raw)
    for signature, status in (("ab" * 32, 401), (good, 202)):
        spy.calls.clear()
        result = api.client.simulate_post(INGRESS, body=raw, headers={
            "Content-Type": "application/json", "x-autobyteus-gateway-timestamp": stamp,
            "x-autobyteus-gateway-signature": signature})
        assert result.status_code == status, result.text
        assert len(spy.calls) == 1, spy.calls
        compared = set(spy.calls[0])
        assert good.encode() in compared and signature.encode() in compared


def test_a_wrong_token_is_never_echoed(api: Api) -> None:
    result = api.client.simulate_get("/rest/api/prompts",
                                     headers={"Authorization": "Bearer guess-123"})
    error(result, 401, "UNAUTHORIZED")
    assert "guess-123" not in result.text and TOKEN not in result.text
