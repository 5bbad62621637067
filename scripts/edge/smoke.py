#!/usr/bin/env python3
"""HTTP smoke test of every domain against a running server. Standard library only: it runs inside
the emulated ARM roots, against the server there.

    python3 smoke.py --url http://127.0.0.1:PORT [--gateway-secret S] [--callback stub|none]

``--gateway-secret``: the server's CHANNEL_GATEWAY_SHARED_SECRET (ingress is then signed, and an
unsigned request must be refused). ``--callback stub``: the server's CHANNEL_CALLBACK_BASE_URL
points at a stub gateway (see ``GatewayStub``) and the reply must reach it; ``none``: no callback
is configured and a reply must answer CALLBACK_NOT_CONFIGURED.

Prints one JSON line (the checks passed, per domain) and exits 0, or names the failed check and
exits 1.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CALLBACK_PATH = "/api/server-callback/v1/messages"


class SmokeFailure(AssertionError):
    pass


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = resp.read()
                status, hdrs = resp.status, {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            status, hdrs = exc.code, {k.lower(): v for k, v in exc.headers.items()}
        return status, (json.loads(payload) if payload else None), hdrs


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The gateway protocol's signature: hex HMAC-SHA256(secret, "<timestamp>.<raw body>")."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class GatewayStub:
    """A gateway that accepts the server's reply callbacks (HTTP 200) and keeps them."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                received.append({"path": self.path, "body": json.loads(body or b"null"),
                                 "headers": dict(self.headers.items())})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GatewayStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def run(url: str, *, gateway_secret: str | None = None, callback: str = "none",
        stub: GatewayStub | None = None, token: str | None = None) -> dict[str, list[str]]:
    """Every domain once over HTTP; the checks passed, by domain (raises SmokeFailure)."""
    c = Client(url, token)
    passed: dict[str, list[str]] = {}
    tag = uuid.uuid4().hex[:8]  # lets the smoke test run twice against one store

    def check(domain: str, name: str, ok: bool, detail: Any = None) -> None:
        if not ok:
            raise SmokeFailure(f"{domain}: {name} failed: {detail!r}")
        passed.setdefault(domain, []).append(name)

    # -- service ---------------------------------------------------------------------------------
    status, health, _ = c.call("GET", "/health")
    check("service", "health", status == 200 and health.get("status") == "ok", health)
    status, doc, _ = c.call("GET", "/openapi.json")
    check("service", "openapi", status == 200 and "/rest/api/prompts" in doc["paths"], status)

    # -- prompts: create, revision, activate, template, categories -------------------------------
    name, category = "greeter-" + tag, "chat"
    status, p1, hdrs = c.call("POST", "/rest/api/prompts", {
        "name": name, "category": category, "promptContent": "Hello {{who}}",
        "suitableForModels": "gpt-x"})
    check("prompts", "create", status == 201 and p1["id"] and hdrs.get("etag"), p1)
    status, p2, _ = c.call("POST", f"/rest/api/prompts/{p1['id']}/revisions",
                           {"promptContent": "Hello again {{who}}"})
    check("prompts", "revision", status == 201 and p2["id"] != p1["id"]
          and p2.get("version", 2) == p1.get("version", 1) + 1, p2)
    status, p2got, hdrs = c.call("GET", f"/rest/api/prompts/{p2['id']}")
    check("prompts", "get", status == 200
          and p2got["promptContent"] == "Hello again {{who}}", p2got)
    status, active, _ = c.call("POST", f"/rest/api/prompts/{p2['id']}/activate",
                               headers={"If-Match": hdrs["etag"]})
    check("prompts", "activate", status == 200 and active["isActive"] is True, active)
    status, old, _ = c.call("GET", f"/rest/api/prompts/{p1['id']}")
    check("prompts", "one-active-per-family", status == 200 and old["isActive"] is False, old)
    q = urllib.parse.urlencode({"name": name, "category": category, "model": "gpt-x"})
    status, tpl, _ = c.call("GET", "/rest/api/prompt-templates?" + q)
    check("prompts", "template", status == 200 and tpl["id"] == p2["id"], tpl)
    q = urllib.parse.urlencode({"name": name, "category": category, "model": "other"})
    status, err, _ = c.call("GET", "/rest/api/prompt-templates?" + q)
    check("prompts", "template-unsuitable-404", status == 404 and err["code"] == "NOT_FOUND", err)
    status, cats, _ = c.call("GET", "/rest/api/prompt-categories")
    check("prompts", "categories", status == 200 and category in json.dumps(cats), cats)
    status, page, _ = c.call("GET", "/rest/api/prompts?" + urllib.parse.urlencode(
        {"name": name, "limit": "10"}))
    check("prompts", "list", status == 200 and len(page["items"]) == 2, page)

    # -- agent definitions -----------------------------------------------------------------------
    status, agent, hdrs = c.call("POST", "/rest/api/agent-definitions", {
        "name": "helper-" + tag, "role": "assistant", "description": "helps",
        "systemPromptCategory": category, "systemPromptName": name})
    check("agent-definitions", "create", status == 201 and agent["id"], agent)
    status, detail, _ = c.call("GET", f"/rest/api/agent-definitions/{agent['id']}"
                                      "?includePrompts=true")
    check("agent-definitions", "get-with-prompts", status == 200, detail)
    status, patched, _ = c.call("PATCH", f"/rest/api/agent-definitions/{agent['id']}",
                                {"description": "helps more"}, headers={"If-Match": hdrs["etag"]})
    check("agent-definitions", "patch", status == 200
          and patched["description"] == "helps more", patched)
    status, page, _ = c.call("GET", "/rest/api/agent-definitions")
    check("agent-definitions", "list", status == 200
          and agent["id"] in [a["id"] for a in page["items"]], status)

    # -- agent teams -----------------------------------------------------------------------------
    status, team, _ = c.call("POST", "/rest/api/agent-team-definitions", {
        "name": "team-" + tag, "description": "d", "coordinatorMemberName": "lead",
        "nodes": [{"memberName": "lead", "referenceId": agent["id"],
                   "referenceType": "AGENT"}]})
    check("agent-teams", "create", status == 201 and team["id"], team)
    status, got, _ = c.call("GET", f"/rest/api/agent-team-definitions/{team['id']}")
    check("agent-teams", "get", status == 200 and got == team, got)
    status, _, _ = c.call("DELETE", f"/rest/api/agent-team-definitions/{team['id']}")
    status2, _, _ = c.call("GET", f"/rest/api/agent-team-definitions/{team['id']}")
    check("agent-teams", "delete", status == 204 and status2 == 404, (status, status2))

    # -- MCP servers: PUT, import ----------------------------------------------------------------
    sid = "fs-" + tag
    status, mcp, _ = c.call("PUT", f"/rest/api/mcp-servers/{sid}",
                            {"transportType": "stdio", "command": "npx", "args": ["-y", "fs"]})
    check("mcp-servers", "put-create", status == 201 and mcp["serverId"] == sid, mcp)
    status, mcp, _ = c.call("PUT", f"/rest/api/mcp-servers/{sid}",
                            {"transportType": "stdio", "command": "uvx"})
    check("mcp-servers", "put-replace", status == 200 and mcp["command"] == "uvx", mcp)
    status, imported, _ = c.call("POST", "/rest/api/mcp-servers/import", {"mcpServers": {
        "web-" + tag: {"url": "http://127.0.0.1:1/mcp"},
        "bad-" + tag: {"transportType": "carrier-pigeon"}}})
    check("mcp-servers", "import", status == 200 and imported["importedCount"] == 1
          and imported["failedCount"] == 1, imported)
    status, got, _ = c.call("GET", f"/rest/api/mcp-servers/web-{tag}")
    check("mcp-servers", "get-imported", status == 200
          and got["transportType"] == "streamable_http", got)

    # -- token usage: conversation, records, statistics, total cost ------------------------------
    agent_run = "run-" + tag
    status, records, _ = c.call("POST", "/rest/api/token-usage/conversations", {
        "agentId": agent_run, "llmModel": "m-" + tag, "promptTokens": 10,
        "completionTokens": 5, "promptCost": 0.25, "completionCost": 0.5})
    check("token-usage", "conversation", status == 201 and len(records) == 2, records)
    status, rec, _ = c.call("POST", "/rest/api/token-usage/records", {
        "agentId": agent_run, "role": "user", "tokenCount": 7, "cost": 0.125,
        "llmModel": "m-" + tag})
    check("token-usage", "record", status == 201 and rec["tokenCount"] == 7, rec)
    status, page, _ = c.call("GET", "/rest/api/token-usage/records?" + urllib.parse.urlencode(
        {"start": "2000-01-01", "agentId": agent_run}))
    check("token-usage", "list", status == 200
          and sorted(r["tokenCount"] for r in page["items"]) == [5, 7, 10], page)
    status, stats, _ = c.call("GET", "/rest/api/token-usage/statistics?start=2000-01-01")
    mine = [s for s in stats if s["llmModel"] == "m-" + tag] if status == 200 else []
    check("token-usage", "statistics", len(mine) == 1 and mine[0]["promptTokens"] == 17
          and mine[0]["assistantTokens"] == 5
          and abs(mine[0]["totalCost"] - 0.875) < 1e-9, stats)
    status, total, _ = c.call("GET", "/rest/api/token-usage/total-cost?start=2000-01-01")
    check("token-usage", "total-cost", status == 200 and total["totalCost"] >= 0.875, total)

    # -- artifacts -------------------------------------------------------------------------------
    status, art, _ = c.call("POST", "/rest/api/agent-artifacts", {
        "agentId": agent_run, "path": "out/report.csv", "type": "csv"})
    check("artifacts", "create", status == 201 and art["id"], art)
    status, page, _ = c.call("GET", "/rest/api/agent-artifacts?agentId=" + agent_run)
    check("artifacts", "list", status == 200 and [a["id"] for a in page["items"]] == [art["id"]],
          page)

    # -- channel: binding, signed ingress, inbox, ack, receipt, reply ----------------------------
    route = {"provider": "WHATSAPP", "transport": "BUSINESS_API", "accountId": "acc-" + tag,
             "peerId": "peer-1"}
    target = "agent-" + tag
    status, binding, _ = c.call("PUT", "/rest/api/channel-bindings",
                                {**route, "targetType": "AGENT", "agentId": target})
    check("channel", "binding", status == 201 and binding["id"], binding)

    def ingress(message_id: str, content: str) -> tuple[int, Any]:
        raw = json.dumps({**route, "peerType": "USER", "externalMessageId": message_id,
                          "content": content, "receivedAt": "2026-02-22T10:15:30.123Z"}).encode()
        headers = {}
        if gateway_secret:
            ts = str(int(time.time()))
            headers = {"x-autobyteus-gateway-timestamp": ts,
                       "x-autobyteus-gateway-signature": sign(gateway_secret, ts, raw)}
        status, body, _ = c.call("POST", "/rest/api/channel-ingress/v1/messages", raw=raw,
                                 headers=headers)
        return status, body

    status, first = ingress("m-1", "hello")
    check("channel", "signed-ingress" if gateway_secret else "ingress",
          status == 202 and first["disposition"] == "ROUTED", first)
    status, dup = ingress("m-1", "hello")
    check("channel", "ingress-duplicate", status == 202 and dup["duplicate"] is True, dup)
    ingress("m-2", "again")
    if gateway_secret:
        status, refused, _ = c.call("POST", "/rest/api/channel-ingress/v1/messages",
                                    {**route, "peerType": "USER", "externalMessageId": "m-x",
                                     "content": "x", "receivedAt": "2026-02-22T10:15:30Z"})
        check("channel", "unsigned-refused", status == 401
              and refused["code"] == "MISSING_SIGNATURE", refused)
    status, inbox, _ = c.call("GET", f"/rest/api/channel-inbox/AGENT/{target}")
    check("channel", "inbox", status == 200
          and [m["content"] for m in inbox["items"]] == ["hello", "again"], inbox)
    status, ack, _ = c.call("POST", f"/rest/api/channel-inbox/AGENT/{target}/ack",
                            {"messageIds": [inbox["items"][0]["id"]]})
    check("channel", "ack", status == 200 and ack == {"acknowledged": 1}, ack)
    status, left, _ = c.call("GET", f"/rest/api/channel-inbox/AGENT/{target}")
    check("channel", "inbox-after-ack", [m["content"] for m in left["items"]] == ["again"], left)
    status, turn, _ = c.call("POST", "/rest/api/channel-receipts/turns", {
        **route, "externalMessageId": "m-1", "turnId": "t-1", "agentId": target})
    check("channel", "turn-receipt", status == 200 and turn["turnId"] == "t-1", turn)
    status, reply, _ = c.call("POST", "/rest/api/channel-replies",
                              {"agentId": target, "turnId": "t-1", "replyText": "hi back"})
    if callback == "none":
        check("channel", "reply-CALLBACK_NOT_CONFIGURED", status == 202
              and reply["published"] is False and reply["reason"] == "CALLBACK_NOT_CONFIGURED",
              reply)
    else:
        check("channel", "reply-published", status == 202 and reply["published"] is True, reply)
        key = reply["callbackIdempotencyKey"]
        deadline = time.monotonic() + 120
        event: Any = None
        while time.monotonic() < deadline:
            status, event, _ = c.call("GET", "/rest/api/channel-delivery-events/"
                                      + urllib.parse.quote(key, safe=""))
            if stub is not None and stub.received and status == 200:
                break
            time.sleep(0.2)
        if stub is not None:
            check("channel", "reply-delivered-to-stub", len(stub.received) == 1
                  and stub.received[0]["path"] == CALLBACK_PATH
                  and stub.received[0]["body"]["replyText"] == "hi back", stub.received)
        status, outbox, _ = c.call("GET", "/rest/api/channel-outbox")
        check("channel", "outbox", status == 200 and len(outbox["items"]) >= 1, outbox)
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--gateway-secret")
    parser.add_argument("--callback", choices=["none", "stub"], default="none",
                        help="'stub' expects the server's callback URL to be a GatewayStub")
    parser.add_argument("--token")
    args = parser.parse_args(argv)
    try:
        passed = run(args.url, gateway_secret=args.gateway_secret, callback=args.callback,
                     token=args.token)
    except SmokeFailure as exc:
        print(f"smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"smoke": "ok", "checks": sum(map(len, passed.values())),
                      "domains": passed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
