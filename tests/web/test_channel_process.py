"""Nothing enqueued is lost across a crash: the real server (``python -m web``) is killed with
SIGKILL while its outbox holds replies for a gateway that is down; restarted with the gateway up,
it delivers every one of them, signed, and the delivery events end SENT."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.domains.channel_support import ENVELOPE, ROUTE, GatewayStub
from tests.web.server_support import Server

SECRET = "process-callback-secret"


def callback_env(callback_url: str) -> dict[str, str]:
    return {"CHANNEL_CALLBACK_BASE_URL": callback_url, "CHANNEL_CALLBACK_SHARED_SECRET": SECRET,
            "CHANNEL_CALLBACK_TIMEOUT_MS": "2000"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_replies_queued_before_a_sigkill_are_delivered_after_restart(tmp_path: Path) -> None:
    port = free_port()  # the gateway's port; nothing listens there yet (the gateway is down)
    callback_url = f"http://127.0.0.1:{port}"
    server = Server(tmp_path, **callback_env(callback_url))
    keys = []
    try:
        assert server.call("PUT", "/rest/api/channel-bindings",
                           {**ROUTE, "targetType": "AGENT", "agentId": "agent-1"})[0] == 201
        for i in range(3):
            status, answer = server.call("POST", "/rest/api/channel-ingress/v1/messages",
                                         {**ENVELOPE, "externalMessageId": f"m-{i}"})
            assert status == 202 and answer["disposition"] == "ROUTED"
            assert server.call("POST", "/rest/api/channel-receipts/turns", {
                **ROUTE, "externalMessageId": f"m-{i}", "turnId": f"t-{i}",
                "agentId": "agent-1"})[0] == 200
            status, answer = server.call("POST", "/rest/api/channel-replies", {
                "agentId": "agent-1", "turnId": f"t-{i}", "replyText": f"reply {i}"})
            assert status == 202 and answer["published"], answer
            keys.append(answer["callbackIdempotencyKey"])
        # the worker tries, finds the gateway down, and schedules retries
        deadline = time.monotonic() + 10
        while True:
            entries = server.call("GET", "/rest/api/channel-outbox")[1]["items"]
            if all(e["status"] == "FAILED_RETRY" for e in entries):
                break
            assert time.monotonic() < deadline, entries
            time.sleep(0.05)
        assert len(entries) == 3
        assert all(e["lastError"].startswith("network error") for e in entries)
    finally:
        server.kill()

    gateway = GatewayStub(secret=SECRET, port=port)
    server = Server(tmp_path, **callback_env(callback_url))
    try:
        deadline = time.monotonic() + 30
        while set(gateway.delivered) != set(keys):
            assert time.monotonic() < deadline, (gateway.delivered, gateway.requests)
            time.sleep(0.05)
        assert gateway.bad_signatures == 0
        assert sorted(e["replyText"] for e in gateway.delivered.values()) == \
            ["reply 0", "reply 1", "reply 2"]
        deadline = time.monotonic() + 10
        while True:
            events = [server.call("GET", f"/rest/api/channel-delivery-events/{k}")[1]
                      for k in keys]
            if all(e["status"] == "SENT" for e in events):
                break
            assert time.monotonic() < deadline, events
            time.sleep(0.05)
        entries = server.call("GET", "/rest/api/channel-outbox?status=SENT")[1]["items"]
        assert len(entries) == 3
    finally:
        assert server.stop() == 0, "".join(server.log)
        gateway.close()
    assert "Traceback" not in "".join(server.log)
