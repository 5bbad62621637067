"""The channel as operators run it, over HTTP (lmdb): the outbox listed by state, a dead letter put
back, the outbox summary, the capabilities that binding validation enforces, and the WARNING line
of a refused ingress signature (rate-limited, never the secret, the signature or the body)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import falcon.testing
import pytest

from domains.channel import signing
from domains.channel.logbook import RateLimitedLog
from domains.channel.models import PROVIDERS, TARGET_TYPES, TRANSPORTS
from domains.channel.outbox import OutboxWorker
from domains.channel.service import ChannelService
from engine import Store
from tests.domains.channel_support import ENVELOPE, ROUTE, FloatClock, GatewayStub
from web.app import create_app
from web.settings import Settings

OUTBOX = "/rest/api/channel-outbox"
INGRESS = "/rest/api/channel-ingress/v1/messages"
CALLBACK_SECRET = "callback-secret"


@pytest.fixture
def gateway() -> Iterator[GatewayStub]:
    stub = GatewayStub(secret=CALLBACK_SECRET)
    yield stub
    stub.close()


@pytest.fixture
def store(make_store: Any) -> Store:
    return make_store.open("lmdb")


@pytest.fixture
def client(store: Store, gateway: GatewayStub) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(store, Settings(
        provider="lmdb", callback_base_url=gateway.base_url,
        callback_shared_secret=CALLBACK_SECRET)))


def worker_of(store: Store, gateway: GatewayStub) -> OutboxWorker:
    """A worker of its own over the app's store, driven by hand (no thread, no waiting)."""
    return OutboxWorker(ChannelService(store), base_url=gateway.base_url,
                        shared_secret=CALLBACK_SECRET, clock=FloatClock(), timeout_ms=2000)


def publish(client: falcon.testing.TestClient, n: int) -> list[str]:
    client.simulate_put("/rest/api/channel-bindings",
                        json={**ROUTE, "targetType": "AGENT", "agentId": "agent-1"})
    keys = []
    for i in range(n):
        client.simulate_post(INGRESS, json={**ENVELOPE, "externalMessageId": f"m-{i}"})
        client.simulate_post("/rest/api/channel-receipts/turns", json={
            **ROUTE, "externalMessageId": f"m-{i}", "turnId": f"t-{i}", "agentId": "agent-1"})
        reply = client.simulate_post("/rest/api/channel-replies", json={
            "agentId": "agent-1", "turnId": f"t-{i}", "replyText": f"reply {i}"})
        assert reply.json["published"], reply.json
        keys.append(reply.json["callbackIdempotencyKey"])
    return keys


def error_code(result: falcon.testing.Result, status: int) -> str:
    assert result.status_code == status, (result.status_code, result.text)
    assert set(result.json) == {"code", "detail", "field"}
    return result.json["code"]


def test_dead_letters_listed_and_put_back(client: falcon.testing.TestClient, store: Store,
                                          gateway: GatewayStub) -> None:
    keys = publish(client, 3)
    gateway.plan = [(422, b'{"code":"VALIDATION_FAILED","detail":"chunks"}'), 202, 503]
    worker_of(store, gateway).run_once()
    listed = client.simulate_get(OUTBOX).json
    assert [(e["id"], e["status"]) for e in listed["items"]] == \
        [("3", "FAILED_RETRY"), ("2", "SENT"), ("1", "DEAD_LETTER")]
    retrying, sent, dead = listed["items"]
    assert (dead["attempts"], dead["nextAttemptAt"], dead["lastError"]) == \
        (1, None, '422 {"code":"VALIDATION_FAILED","detail":"chunks"}')
    assert retrying["nextAttemptAt"] == retrying["dueAt"] and retrying["nextAttemptAt"]
    assert retrying["lastError"] == '503 {"code":"HTTP_503"}'
    assert (sent["lastError"], sent["nextAttemptAt"]) == (None, None)
    page = client.simulate_get(OUTBOX, params={"status": "DEAD_LETTER", "limit": "1"}).json
    assert [e["id"] for e in page["items"]] == ["1"] and page["nextCursor"] is None
    event = f"/rest/api/channel-delivery-events/{keys[0]}"
    assert client.simulate_get(event).json["status"] == "FAILED"

    back = client.simulate_post(f"{OUTBOX}/1/retry")
    assert back.status_code == 200, back.text
    assert (back.json["status"], back.json["attempts"], back.json["nextAttemptAt"] is not None) \
        == ("PENDING", 0, True)
    assert client.simulate_get(event).json["status"] == "PENDING"
    assert error_code(client.simulate_post(f"{OUTBOX}/1/retry"), 409) == "CONFLICT"
    assert error_code(client.simulate_post(f"{OUTBOX}/2/retry"), 409) == "CONFLICT"
    assert error_code(client.simulate_post(f"{OUTBOX}/77/retry"), 404) == "NOT_FOUND"
    worker_of(store, gateway).run_once()
    assert client.simulate_get(event).json["status"] == "SENT"
    assert set(gateway.delivered) == {keys[0], keys[1]}


def test_the_outbox_summary(client: falcon.testing.TestClient, store: Store,
                            gateway: GatewayStub) -> None:
    empty = client.simulate_get("/rest/api/channel-outbox-summary")
    assert empty.status_code == 200
    assert empty.json["counts"] == {"PENDING": 0, "DISPATCHING": 0, "SENT": 0,
                                    "FAILED_RETRY": 0, "DEAD_LETTER": 0}
    assert empty.json["oldestPendingAgeSeconds"] is None
    assert empty.json["oldestPendingCreatedAt"] is None
    publish(client, 3)
    gateway.plan = [400]
    worker = worker_of(store, gateway)
    worker.batch_size = 1
    worker.run_once()
    summary = client.simulate_get("/rest/api/channel-outbox-summary").json
    assert summary["counts"] == {"PENDING": 2, "DISPATCHING": 0, "SENT": 0, "FAILED_RETRY": 0,
                                 "DEAD_LETTER": 1}
    second = client.simulate_get(f"{OUTBOX}", params={"status": "PENDING"}).json["items"][-1]
    assert summary["oldestPendingCreatedAt"] == second["createdAt"]
    assert summary["oldestPendingAgeSeconds"] >= 0


def test_capabilities_are_what_binding_validation_accepts(
    client: falcon.testing.TestClient
) -> None:
    answer = client.simulate_get("/rest/api/channel-capabilities")
    assert answer.status_code == 200 and answer.json["nextCursor"] is None
    declared = {(c["provider"], c["transport"]): c["targetTypes"]
                for c in answer.json["items"]}
    assert declared[("TELEGRAM", "BUSINESS_API")] == ["AGENT"]
    assert declared[("WHATSAPP", "PERSONAL_SESSION")] == ["AGENT", "TEAM"]
    assert len(declared) == 6
    for provider in PROVIDERS:
        for transport in TRANSPORTS:
            peer = "channel:123" if provider == "DISCORD" else "peer-x"
            for target in TARGET_TYPES:
                ids = {"agentId": "a"} if target == "AGENT" else {"teamId": "t"}
                result = client.simulate_put("/rest/api/channel-bindings", json={
                    "provider": provider, "transport": transport, "accountId": "acc",
                    "peerId": peer, "targetType": target, **ids})
                accepted = target in declared.get((provider, transport), [])
                assert (result.status_code in (200, 201)) == accepted, \
                    (provider, transport, target, result.text)
                if not accepted:
                    code = error_code(result, 400)
                    assert code == ("UNSUPPORTED_TARGET" if (provider, transport) in declared
                                    else "UNSUPPORTED_TRANSPORT")


def test_a_refused_signature_writes_one_warning_line(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(gateway_shared_secret="gateway-secret")
    raw = json.dumps({**ENVELOPE, "content": "private words"}).encode()
    stamp = str(int(time.time()))
    wrong = signing.sign("not-the-secret", stamp, raw)
    with caplog.at_level(logging.WARNING, logger="web.channel"):
        result = client.simulate_post(INGRESS, body=raw, headers={
            "Content-Type": "application/json", "x-autobyteus-gateway-timestamp": stamp,
            "x-autobyteus-gateway-signature": wrong})
        assert result.status_code == 401
        client.simulate_post(INGRESS, body=b"not json at all", headers={
            "Content-Type": "application/json", "x-autobyteus-gateway-timestamp": stamp})
    lines = [r.getMessage() for r in caplog.records if r.name == "web.channel"]
    assert len(lines) == 2
    assert "INVALID_SIGNATURE" in lines[0]
    assert "WHATSAPP:BUSINESS_API:acc-1:peer-1:direct" in lines[0]
    assert "MISSING_SIGNATURE" in lines[1] and "route unknown" in lines[1]
    for line in lines:
        for secret in ("gateway-secret", wrong, "private words", "not json"):
            assert secret not in line


def test_refused_signatures_cannot_flood_the_log(make_client: Any,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(gateway_shared_secret="gateway-secret")
    with caplog.at_level(logging.WARNING, logger="web.channel"):
        for _ in range(50):
            assert client.simulate_post(INGRESS, json=ENVELOPE).status_code == 401
    lines = [r for r in caplog.records if r.name == "web.channel"]
    assert 1 <= len(lines) < 50


def test_the_rate_limit_counts_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("test.ratelimit"), burst=2, window=60.0,
                             clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        written = [limited.warning("refused %s", i) for i in range(5)]
        now[0] = 59.9
        assert not limited.warning("refused late")
        now[0] = 60.0
        assert limited.warning("refused %s", "next window")
    assert written == [True, True, False, False, False]
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0", "refused 1", "refused next window (4 similar lines held back)"]
