"""Secrets are never logged nor returned: the real server runs with distinctive values for the API
token and both channel secrets; every documented route, the service routes and error paths are
exercised; no response (status line, headers, body) and no line of its log contains a secret."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

from domains.channel import signing
from tests.security.process import RunningServer, wait_until
from web.settings import Settings

TOKEN = "tok-SEKRIT-4f1a9c"
GATEWAY = "gw-SEKRIT-77c2e1"
CALLBACK = "cb-SEKRIT-e93b05"
SECRETS = (TOKEN, GATEWAY, CALLBACK)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTE = {"provider": "TELEGRAM", "transport": "BUSINESS_API", "accountId": "acc",
         "peerId": "peer"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def signed(raw: bytes, secret: str = GATEWAY) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {"Content-Type": "application/json", "x-autobyteus-gateway-timestamp": stamp,
            "x-autobyteus-gateway-signature": signing.sign(secret, stamp, raw)}


BODIES: dict[str, Any] = {
    "/rest/api/prompts": {"name": "p", "category": "c", "promptContent": "x"},
    "/rest/api/agent-definitions": {"name": "a", "role": "r", "description": "d",
                                    "systemPromptCategory": "c", "systemPromptName": "p"},
    "/rest/api/agent-team-definitions": {"name": "t", "description": "d",
                                         "coordinatorMemberName": "m", "nodes": []},
    "/rest/api/token-usage/records": {"agentId": "a", "role": "user", "tokenCount": 1},
    "/rest/api/token-usage/conversations": {"agentId": "a", "promptTokens": 1,
                                            "completionTokens": 2},
    "/rest/api/agent-artifacts": {"agentId": "a", "path": "/f"},
    "/rest/api/mcp-servers/import": {"mcpServers": {"s": {"transportType": "stdio",
                                                          "command": "x"}}},
    "/rest/api/channel-bindings": {**ROUTE, "targetType": "AGENT", "agentId": "agent-1"},
    "/rest/api/channel-receipts/turns": {**ROUTE, "externalMessageId": "m-1", "turnId": "t-1",
                                         "agentId": "agent-1"},
    "/rest/api/channel-replies": {"agentId": "agent-1", "turnId": "t-1", "replyText": "hi"},
    "/rest/api/channel-inbox/AGENT/agent-1/ack": {"messageIds": ["nope"]},
    "/rest/api/channel-ingress/v1/messages": {**ROUTE, "peerType": "USER",
                                              "externalMessageId": "m-1", "content": "hello",
                                              "receivedAt": "2026-02-22T10:15:30.123Z"},
    "/rest/api/channel-ingress/v1/delivery-events": {**ROUTE, "status": "DELIVERED",
                                                     "metadata": {"callbackIdempotencyKey": "k"}},
    "/rest/api/mcp-servers/srv": {"transportType": "stdio", "command": "x"},
}


def concrete(template: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "x"), template)


def test_no_endpoint_and_no_log_line_reveals_a_secret(tmp_path: Path) -> None:
    server = RunningServer(
        tmp_path,
        AUTOBYTEUS_API_TOKEN=TOKEN,
        CHANNEL_GATEWAY_SHARED_SECRET=GATEWAY,
        CHANNEL_CALLBACK_SHARED_SECRET=CALLBACK,
        # Nothing listens there: the outbox worker fails, retries and logs its failures.
        CHANNEL_CALLBACK_BASE_URL=f"http://127.0.0.1:{free_port()}/callback",
        CHANNEL_CALLBACK_TIMEOUT_MS="300",
        AUTOBYTEUS_OUTBOX_POLL_INTERVAL_SECONDS="1",
    )
    seen: list[str] = []

    def exchange(method: str, path: str, body: Any = None, headers: dict | None = None,
                 raw: bytes | None = None) -> tuple[int, Any]:
        status, resp_headers, data = server.request(method, path, body, headers, raw=raw)
        seen.append(f"{method} {path} -> {status}\n{resp_headers}\n"
                    + data.decode("utf-8", "replace"))
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None

    try:
        status, doc = exchange("GET", "/openapi.json")
        assert status == 200
        exchange("GET", "/health")
        ids: dict[str, str] = {}
        # The data first: a routed message, a turn, a reply (the outbox then works in the
        # background with the callback secret), a prompt and the rest.
        for path in BODIES:
            raw = json.dumps(BODIES[path]).encode()
            if "/channel-ingress/" in path:
                status, answer = exchange("POST", path, raw=raw, headers=signed(raw))
            elif path.startswith("/rest/api/mcp-servers/srv"):
                status, answer = exchange("PUT", path, raw=raw,
                                          headers={"Content-Type": "application/json", **AUTH})
            else:
                method = "PUT" if path.endswith("channel-bindings") else "POST"
                status, answer = exchange(method, path, raw=raw,
                                          headers={"Content-Type": "application/json", **AUTH})
            assert status < 500, (path, status, answer)
            if isinstance(answer, dict):
                for key in ("id", "callbackIdempotencyKey"):
                    if key in answer and answer[key]:
                        ids.setdefault(key, answer[key])
        ids["server_id"] = "srv"
        ids["targetType"], ids["targetId"] = "AGENT", "agent-1"

        # Every documented route, with the token, without it and with a wrong one, and with a
        # body that is not JSON: the answers and the errors.
        for template, operations in doc["paths"].items():
            path = concrete(template, ids)
            for method in operations:
                m = method.upper()
                body = BODIES.get(path, {"x": 1}) if m in ("POST", "PUT", "PATCH") else None
                for headers in (AUTH, {}, {"Authorization": f"Bearer {TOKEN[:-1]}"},
                                {"Authorization": "Bearer " + GATEWAY}):
                    status, _ = exchange(m, path, body, dict(headers))
                    assert status < 500, (m, path, status)
                if body is not None:
                    exchange(m, path, headers={**AUTH, "Content-Type": "text/plain"},
                             raw=b"not json")
                    exchange(m, path, headers={**AUTH, "Content-Type": "application/json"},
                             raw=b"{" * 50_000)
        # Signatures made with a wrong secret, or with a secret as the signature itself.
        raw = json.dumps(BODIES["/rest/api/channel-ingress/v1/messages"]).encode()
        exchange("POST", "/rest/api/channel-ingress/v1/messages", raw=raw,
                 headers=signed(raw, secret=TOKEN))
        exchange("POST", "/rest/api/channel-ingress/v1/messages", raw=raw,
                 headers={**signed(raw), "x-autobyteus-gateway-signature": GATEWAY})
        for path in ("/nowhere", "/rest/api/prompts/none", "/rest/api/../../etc/passwd"):
            exchange("GET", path, headers=AUTH)
        exchange("DELETE", "/health")
        # Give the outbox worker time to try (and fail) the callback, and log it.
        wait_until(lambda: "outbox entry" in server.log, 15)
    finally:
        assert server.stop() == 0, server.log

    assert len(seen) > 100
    assert "outbox entry" in server.log  # the callback path (and its secret) was exercised
    everything = "\n".join(seen)
    for secret in SECRETS:
        assert secret not in everything, secret
        assert secret not in server.log, secret
    # Nor the settings' printed form (a log line or an error message may show it).
    settings = Settings(api_token=TOKEN, gateway_shared_secret=GATEWAY,
                        callback_shared_secret=CALLBACK)
    for secret in SECRETS:
        assert secret not in repr(settings) and secret not in str(settings)
