"""Nothing enqueued is lost across a crash: the real server (``python -m web``) is killed with
SIGKILL while its outbox holds replies for a gateway that is down; restarted with the gateway up,
it delivers every one of them, signed, and the delivery events end SENT."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.domains.channel_support import ENVELOPE, ROUTE, GatewayStub

ROOT = Path(__file__).resolve().parents[2]
SECRET = "process-callback-secret"


class Server:
    def __init__(self, data_dir: Path, callback_url: str) -> None:
        env = dict(os.environ, PERSISTENCE_PROVIDER="lmdb", AUTOBYTEUS_DATA_DIR=str(data_dir),
                   CHANNEL_CALLBACK_BASE_URL=callback_url,
                   CHANNEL_CALLBACK_SHARED_SECRET=SECRET, CHANNEL_CALLBACK_TIMEOUT_MS="2000")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "web", "--port", "0"], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.log: list[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                self.url = match.group(1)
                break
        else:
            raise AssertionError("the server did not start:\n" + "".join(self.log))

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rest = self.proc.communicate(timeout=60)[1]
        self.log.append(rest or "")
        return self.proc.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_replies_queued_before_a_sigkill_are_delivered_after_restart(tmp_path: Path) -> None:
    port = free_port()  # the gateway's port; nothing listens there yet (the gateway is down)
    callback_url = f"http://127.0.0.1:{port}"
    server = Server(tmp_path, callback_url)
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
    server = Server(tmp_path, callback_url)
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
