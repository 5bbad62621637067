"""The real AutoByteus message gateway's bytes (shared/fixtures/gateway/, see its README) replayed
against the server on every provider: each ingress body is sent byte for byte, never
re-serialised, signed with a fresh timestamp, and the disposition and the stored inbox item are
checked; the unbound message is replayed after binding, also by 64 racing copies; and the reply
envelope the server sends is byte for byte the one the gateway accepted.

The fixtures live outside the repository: beside the clone (``<repo>/../shared``, as in CI) or
further up (a worktree of this checkout); ``AUTOBYTEUS_SHARED_DIR`` names the folder otherwise.
A checkout without them fails here rather than skip: these are the only real client's bytes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from domains.channel import signing
from domains.channel.outbox import OutboxWorker
from engine import Store
from tests.domains.channel_support import FloatClock, GatewayStub, keyword_service

SECRET = "gateway-secret"
INGRESS = "/rest/api/channel-ingress/v1/messages"
REPO = Path(__file__).resolve().parents[2]
ROUTED_FIXTURES = ("ingress-routed-unicode.json", "ingress-attachment-metadata.json",
                   "ingress-empty-content-attachment-nulls.json")
UNBOUND_FIXTURE = "ingress-unbound-peer.json"


def gateway_fixtures_dir() -> Path:
    named = os.environ.get("AUTOBYTEUS_SHARED_DIR")
    candidates = [Path(named)] if named else [p / "shared" for p in REPO.parents]
    for shared in candidates:
        folder = shared / "fixtures" / "gateway"
        if (folder / "README.md").is_file():
            return folder
    pytest.fail("the gateway fixtures (shared/fixtures/gateway/) were not found beside the "
                f"repository {REPO} or above it; set AUTOBYTEUS_SHARED_DIR to the shared/ folder")


def fixture_bytes(name: str) -> bytes:
    return (gateway_fixtures_dir() / name).read_bytes()


def post_signed(client: falcon.testing.TestClient, raw: bytes) -> falcon.testing.Result:
    stamp = str(int(time.time()))
    return client.simulate_post(INGRESS, body=raw, headers={
        "Content-Type": "application/json", "User-Agent": "node",
        "x-autobyteus-gateway-timestamp": stamp,
        "x-autobyteus-gateway-signature": signing.sign(SECRET, stamp, raw),
    })


def bind(client: falcon.testing.TestClient, message: dict[str, Any], agent_id: str) -> str:
    route = {k: message[k] for k in ("provider", "transport", "accountId", "peerId", "threadId")}
    result = client.simulate_put("/rest/api/channel-bindings",
                                 json={**route, "targetType": "AGENT", "agentId": agent_id})
    assert result.status_code in (200, 201), result.text
    return result.json["id"]


def inbox(client: falcon.testing.TestClient, agent_id: str) -> list[dict[str, Any]]:
    result = client.simulate_get(f"/rest/api/channel-inbox/AGENT/{agent_id}")
    assert result.status_code == 200, result.text
    return result.json["items"]


def expected_item(message: dict[str, Any], binding_id: str, agent_id: str) -> dict[str, Any]:
    """What the inbox must hold for a routed gateway message: its content, attachments and
    metadata as sent, and the external source (the gateway's routingKey is the server's too)."""
    return {
        "targetType": "AGENT", "targetId": agent_id, "targetMemberName": None,
        "bindingId": binding_id, "content": message["content"],
        "attachments": message["attachments"], "metadata": message["metadata"],
        "externalSource": {
            "provider": message["provider"], "transport": message["transport"],
            "accountId": message["accountId"], "peerId": message["peerId"],
            "peerType": message["peerType"], "threadId": message["threadId"],
            "externalMessageId": message["externalMessageId"],
            "routingKey": message["routingKey"], "receivedAt": message["receivedAt"],
        },
    }


@pytest.fixture
def gateway_client(backend: str, make_client: Callable[..., falcon.testing.TestClient]
                   ) -> falcon.testing.TestClient:
    return make_client(backend, gateway_shared_secret=SECRET)


def test_the_fixtures_are_the_gateways_bytes() -> None:
    # What the README promises and the tests below rely on: compact JSON, no trailing newline,
    # UTF-8 that is not escaped, and the number the gateway had already rounded.
    for name in (*ROUTED_FIXTURES, UNBOUND_FIXTURE, "callback-reply-accepted.json"):
        raw = fixture_bytes(name)
        assert not raw.endswith(b"\n") and b": " not in raw, name
    assert "ünïcødé ✓".encode() in fixture_bytes("ingress-routed-unicode.json")
    assert b'"big":12345678901234567000' in fixture_bytes("ingress-attachment-metadata.json")


@pytest.mark.parametrize("name", ROUTED_FIXTURES)
def test_each_routed_message_is_stored_as_sent(gateway_client: falcon.testing.TestClient,
                                               name: str) -> None:
    raw = fixture_bytes(name)
    message = json.loads(raw)
    binding_id = bind(gateway_client, message, "agent-A")
    first = post_signed(gateway_client, raw)
    assert first.status_code == 202, first.text
    key = f"{message['routingKey']}::{message['externalMessageId']}"
    assert first.json == {"accepted": True, "duplicate": False, "disposition": "ROUTED",
                          "bindingResolved": True, "idempotencyKey": key,
                          "bindingId": binding_id}
    [item] = inbox(gateway_client, "agent-A")
    assert {k: v for k, v in item.items() if k not in ("id", "enqueuedAt")} == \
        expected_item(message, binding_id, "agent-A")
    # The gateway retries what it did not see answered: the same bytes, a new timestamp.
    again = post_signed(gateway_client, raw)
    assert (again.status_code, again.json["disposition"], again.json["duplicate"]) == \
        (202, "DUPLICATE", True)
    assert len(inbox(gateway_client, "agent-A")) == 1


def test_the_unbound_message_is_routed_when_replayed_after_binding(
    gateway_client: falcon.testing.TestClient
) -> None:
    raw = fixture_bytes(UNBOUND_FIXTURE)
    message = json.loads(raw)
    first = post_signed(gateway_client, raw)
    assert (first.status_code, first.json["disposition"], first.json["bindingResolved"]) == \
        (202, "UNBOUND", False)
    assert post_signed(gateway_client, raw).json["disposition"] == "UNBOUND"
    binding_id = bind(gateway_client, message, "agent-B")
    replay = post_signed(gateway_client, raw)
    assert (replay.json["disposition"], replay.json["bindingId"]) == ("ROUTED", binding_id)
    [item] = inbox(gateway_client, "agent-B")
    assert item["content"] == "nobody bound me"
    assert item["externalSource"]["externalMessageId"] == message["externalMessageId"]
    assert post_signed(gateway_client, raw).json["disposition"] == "DUPLICATE"
    assert len(inbox(gateway_client, "agent-B")) == 1


def test_sixty_four_racing_replays_after_binding_route_once(
    gateway_client: falcon.testing.TestClient
) -> None:
    raw = fixture_bytes(UNBOUND_FIXTURE)
    assert post_signed(gateway_client, raw).json["disposition"] == "UNBOUND"
    bind(gateway_client, json.loads(raw), "agent-B")
    barrier = threading.Barrier(64)
    answers: list[Any] = [None] * 64

    def replay(i: int) -> None:
        barrier.wait()
        try:
            result = post_signed(gateway_client, raw)
            answers[i] = (result.status_code, result.json["disposition"])
        except BaseException as exc:  # collected and checked below
            answers[i] = exc

    threads = [threading.Thread(target=replay, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(answers, key=repr) == sorted(
        [(202, "ROUTED")] + [(202, "DUPLICATE")] * 63, key=repr), answers
    assert len(inbox(gateway_client, "agent-B")) == 1


def test_the_reply_envelope_is_the_one_the_gateway_accepted(store: Store) -> None:
    accepted = fixture_bytes("callback-reply-accepted.json")
    envelope = json.loads(accepted)
    routed = json.loads(fixture_bytes("ingress-routed-unicode.json"))
    agent, turn = "agent-A", envelope["metadata"]["turnId"]
    svc = keyword_service(store, callback_configured=True)
    route = {"provider": routed["provider"], "transport": routed["transport"],
             "account_id": routed["accountId"], "peer_id": routed["peerId"]}
    svc.upsert_binding(**route, target_type="AGENT", agent_id=agent)
    svc.bind_turn(**route, external_message_id=routed["externalMessageId"], turn_id=turn,
                  agent_id=agent)
    published = svc.publish_reply(agent_id=agent, turn_id=turn,
                                  reply_text=envelope["replyText"])
    assert published.callback_idempotency_key == envelope["callbackIdempotencyKey"]
    gateway = GatewayStub(secret="callback-secret")
    try:
        worker = OutboxWorker(svc, base_url=gateway.base_url, shared_secret="callback-secret",
                              clock=FloatClock(), timeout_ms=2000)
        assert worker.run_once() == 1
        [request] = gateway.requests
    finally:
        gateway.close()
    assert request["body"] == accepted
    assert gateway.bad_signatures == 0
