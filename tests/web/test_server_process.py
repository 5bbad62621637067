"""The real server process, started with the README's command, over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.web.server_support import ROOT, Server


def test_start_talk_stop_restart_and_find_every_record(tmp_path: Path) -> None:
    server = Server(tmp_path)
    try:
        assert server.call("GET", "/health") == (200, server.call("GET", "/health")[1])
        assert server.call("GET", "/health")[1]["provider"] == "lmdb"
        status, prompt = server.call(
            "POST", "/rest/api/prompts",
            {"name": "greeter", "category": "chat", "promptContent": "Hello"},
        )
        assert status == 201
        status, records = server.call(
            "POST", "/rest/api/token-usage/conversations",
            {"agentId": "run-1", "llmModel": "m", "promptTokens": 10, "completionTokens": 5,
             "promptCost": 0.1, "completionCost": 0.2},
        )
        assert status == 201 and len(records) == 2
    finally:
        assert server.stop() == 0, "".join(server.log)
    assert "Traceback" not in "".join(server.log)

    server = Server(tmp_path)
    try:
        status, got = server.call("GET", f"/rest/api/prompts/{prompt['id']}")
        assert status == 200 and got == prompt
        status, page = server.call("GET", "/rest/api/token-usage/records?start=2000-01-01")
        assert status == 200 and [r["tokenCount"] for r in page["items"]] == [10, 5]
    finally:
        assert server.stop() == 0


def test_startup_on_lmdb_imports_no_sql_library(tmp_path: Path) -> None:
    code = (
        "import sys, os\n"
        "from web.settings import Settings\n"
        "from web.app import Runtime\n"
        "rt = Runtime.start(Settings.from_env())\n"
        "rt.stop()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'psycopg')]\n"
        "assert not bad, bad\n"
        "print('NO-SQL-OK')\n"
    )
    for provider in ("lmdb", "file"):
        env = dict(os.environ, PERSISTENCE_PROVIDER=provider, AUTOBYTEUS_DATA_DIR=str(tmp_path))
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        assert "NO-SQL-OK" in out.stdout, out.stderr


def test_bad_setting_fails_at_startup_with_a_clear_message(tmp_path: Path) -> None:
    env = dict(os.environ, PERSISTENCE_PROVIDER="mongodb", AUTOBYTEUS_DATA_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "web", "--port", "0"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "PERSISTENCE_PROVIDER" in out.stderr and "lmdb" in out.stderr
    assert "Traceback" not in out.stderr
    env = dict(os.environ, CHANNEL_CALLBACK_TIMEOUT_MS="soon", AUTOBYTEUS_DATA_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "web", "--port", "0"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "CHANNEL_CALLBACK_TIMEOUT_MS" in out.stderr


def test_ctrl_c_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    server = Server(tmp_path, provider="file")
    status, team = server.call("POST", "/rest/api/agent-team-definitions", {
        "name": "t", "description": "d", "coordinatorMemberName": "m",
        "nodes": [{"memberName": "m", "referenceId": "1", "referenceType": "AGENT"}]})
    assert status == 201
    assert server.stop(signal.SIGINT) == 0, "".join(server.log)
    server = Server(tmp_path, provider="file")
    try:
        assert server.call("GET", "/rest/api/agent-team-definitions/" + team["id"]) == (200, team)
    finally:
        server.stop()


def test_waitress_serve_call_factory(tmp_path: Path) -> None:
    waitress_serve = Path(sys.executable).with_name("waitress-serve")
    command = [str(waitress_serve) if waitress_serve.exists() else "waitress-serve",
               "--listen=127.0.0.1:0", "--call", "web.app:from_env"]
    server = Server(tmp_path, command=command)
    try:
        status, body = server.call("GET", "/health")
        assert status == 200 and body["provider"] == "lmdb"
        status, _ = server.call("PUT", "/rest/api/mcp-servers/fs",
                                {"transportType": "stdio", "command": "npx"})
        assert status == 201
    finally:
        server.stop()
    server = Server(tmp_path)
    try:
        assert server.call("GET", "/rest/api/mcp-servers/fs")[0] == 200
    finally:
        server.stop()
