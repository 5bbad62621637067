"""One access-log line per request, X-Request-Id, the log format and level, and the start-up line
with the effective settings (secrets masked)."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import falcon.testing
import pytest

from domains.channel import signing
from tests.domains.channel_support import ENVELOPE
from tests.web.server_support import ROOT, Server
from web.logsetup import configure_logging, effective_settings, log_effective_settings
from web.observe import request_id_from
from web.settings import Settings, SettingsError

TOKEN = "tok-SECRET-1234"
GATEWAY = "gw-SECRET-5678"
INGRESS = "/rest/api/channel-ingress/v1/messages"


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "web.access"]


def test_one_line_per_request_with_the_route_template(
        make_client: Callable[..., falcon.testing.TestClient],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="web.access")
    client = make_client(api_token=TOKEN, gateway_shared_secret=GATEWAY, log_format="json")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    secret_text = "a body that must never be logged"
    created = client.simulate_post("/rest/api/prompts", headers=auth, json={
        "name": "p", "category": "c", "promptContent": secret_text})
    assert created.status_code == 201
    pid = created.json["id"]
    client.simulate_get(f"/rest/api/prompts/{pid}", headers=auth,
                        params={"includeSecret": "query-value"})
    client.simulate_get("/rest/api/prompts")  # no token: 401
    raw = json.dumps({**ENVELOPE, "externalMessageId": "m-log"}).encode()
    stamp = "1707350400"
    signature = signing.sign(GATEWAY, stamp, raw)
    client.simulate_post(INGRESS, body=raw, headers={
        "Content-Type": "application/json", "x-autobyteus-gateway-timestamp": stamp,
        "x-autobyteus-gateway-signature": signature})

    records = access_records(caplog)
    assert len(records) == 4
    lines = [r.getMessage() for r in records]
    assert re.fullmatch(r"POST /rest/api/prompts 201 \d+B \d+\.\dms id=[0-9a-f]{32}", lines[0])
    assert lines[1].startswith("GET /rest/api/prompts/{id} 200 ")
    assert lines[2].startswith("GET /rest/api/prompts 401 ")
    assert lines[3].startswith(f"POST {INGRESS} 401 ")  # stale timestamp: refused
    fields = records[1].http  # type: ignore[attr-defined]
    assert fields["route"] == "/rest/api/prompts/{id}" and fields["status"] == 200
    assert fields["bytes"] == len(client.simulate_get(f"/rest/api/prompts/{pid}",
                                                      headers=auth).content)
    everything = "\n".join(lines) + repr([r.__dict__ for r in records])
    for leaked in (TOKEN, GATEWAY, signature, secret_text, "query-value",
                   f"/rest/api/prompts/{pid}"):
        assert leaked not in everything, leaked


def test_the_access_log_can_be_switched_off(
        make_client: Callable[..., falcon.testing.TestClient],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="web.access")
    make_client(access_log=False).simulate_get("/health")
    assert access_records(caplog) == []


def test_request_ids_are_kept_when_safe_and_made_otherwise(
        client: falcon.testing.TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="web.access")
    given = client.simulate_get("/health", headers={"X-Request-Id": "abc-123.x:y"})
    assert given.headers["x-request-id"] == "abc-123.x:y"
    made = client.simulate_get("/health")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    # An error carries it too.
    missing = client.simulate_get("/nope", headers={"X-Request-Id": "err-1"})
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "err-1"
    for unsafe in ("x" * 129, "has space", "new\nline", "<script>", "ü"):
        assert request_id_from(unsafe) != unsafe
        assert re.fullmatch(r"[0-9a-f]{32}", request_id_from(unsafe))
    assert request_id_from("a" * 128) == "a" * 128
    ids = [r.getMessage().rsplit("id=", 1)[1] for r in access_records(caplog)]
    assert ids[0] == "abc-123.x:y" and ids[2] == "err-1"
    assert ids[1] == made.headers["x-request-id"]


def test_json_format_is_one_object_per_line() -> None:
    out = io.StringIO()
    setup = configure_logging("INFO", "json", stream=out)
    try:
        logging.getLogger("web.access").info(
            "GET /health 200 10B 0.1ms id=x",
            extra={"http": {"method": "GET", "route": "/health", "status": 200}})
        logging.getLogger("web.test").debug("below the level")
        logging.getLogger("web.test").warning("quote \" and\nnewline")
        setup.flush()
    finally:
        setup.undo()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    second, first = (json.loads(line) for line in lines)  # the access line waits for a batch
    assert first["logger"] == "web.access" and first["level"] == "INFO"
    assert first["http"] == {"method": "GET", "route": "/health", "status": 200}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert second["message"] == "quote \" and\nnewline"


def test_access_lines_are_written_in_batches_and_none_is_lost() -> None:
    out = io.StringIO()
    setup = configure_logging("INFO", "text", stream=out)
    access = logging.getLogger("web.access")
    try:
        for i in range(600):  # past max_lines (256): written without waiting for the delay
            access.info("line %d", i)
        # The rest is written by the writer thread within max_delay (0.25 s) of its first
        # line, with no further line to push it: wait for it (a bound, not a measurement).
        deadline = time.monotonic() + 30
        while out.getvalue().count("\n") < 600 and time.monotonic() < deadline:
            time.sleep(0.01)
        written = out.getvalue().splitlines()
        access.info("last line")
    finally:
        setup.undo()  # flushes what waits
    assert [line.rsplit(" ", 1)[1] for line in written] == [str(i) for i in range(600)]
    assert out.getvalue().splitlines()[-1].endswith("web.access last line")
    assert access.propagate  # undo() gave the logger back


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_servers_access_writer_formats_as_the_log_does(
        make_client: Callable[..., falcon.testing.TestClient], fmt: str) -> None:
    out = io.StringIO()
    setup = configure_logging("INFO", fmt, stream=out)
    try:
        client = make_client(log_format=fmt)
        client.simulate_get("/health", headers={"X-Request-Id": "w-1"})
        client.simulate_get("/nope")
        logging.getLogger("web.test").warning("other")
        setup.flush()
    finally:
        setup.undo()
    lines = out.getvalue().splitlines()
    access = [line for line in lines if "web.access" in line]
    assert len(lines) == 3 and len(access) == 2
    if fmt == "text":
        stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
        assert re.fullmatch(stamp + r" INFO web.access GET /health 200 \d+B \d+\.\dms id=w-1",
                            access[0])
        assert re.fullmatch(stamp + r" INFO web.access GET \(unmatched\) 404 \d+B \d+\.\dms "
                            r"id=[0-9a-f]{32}", access[1])
        other = next(line for line in lines if "web.test" in line)
        assert re.fullmatch(stamp + " WARNING web.test other", other)  # the same shape
    else:
        first, second = (json.loads(line) for line in access)
        assert first["logger"] == "web.access" and first["level"] == "INFO"
        assert first["http"]["request_id"] == "w-1" and first["http"]["status"] == 200
        assert first["message"].startswith("GET /health 200 ")
        assert second["http"]["route"] == "(unmatched)"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
        other = json.loads(next(line for line in lines if "web.test" in line))
        assert set(other) == {"time", "level", "logger", "message"}


def test_log_settings_are_checked() -> None:
    settings = Settings.from_env({"AUTOBYTEUS_LOG_LEVEL": "debug", "AUTOBYTEUS_LOG_FORMAT": "JSON",
                                  "AUTOBYTEUS_METRICS_PUBLIC": "1",
                                  "AUTOBYTEUS_ACCESS_LOG": "off"})
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    assert settings.metrics_public is True and settings.access_log is False
    for env, named in (({"AUTOBYTEUS_LOG_LEVEL": "loud"}, "AUTOBYTEUS_LOG_LEVEL"),
                       ({"AUTOBYTEUS_LOG_FORMAT": "xml"}, "AUTOBYTEUS_LOG_FORMAT"),
                       ({"AUTOBYTEUS_METRICS_PUBLIC": "maybe"}, "AUTOBYTEUS_METRICS_PUBLIC")):
        with pytest.raises(SettingsError, match=named):
            Settings.from_env(env)


def test_effective_settings_mask_secrets() -> None:
    settings = Settings.from_env({
        "AUTOBYTEUS_API_TOKEN": TOKEN, "CHANNEL_GATEWAY_SHARED_SECRET": GATEWAY,
        "PERSISTENCE_PROVIDER": "postgresql",
        "AUTOBYTEUS_DATABASE_URL": "postgresql://app:pw-SECRET@db.local:5433/kv"})
    shown = effective_settings(settings)
    assert shown["api_token"] == "***" and shown["gateway_shared_secret"] == "***"
    assert shown["callback_shared_secret"] is None  # not set: says so
    assert shown["database_url"] == "postgresql://app:***@db.local:5433/kv"
    assert shown["threads"] == 8 and shown["provider"] == "postgresql"
    out = io.StringIO()
    setup = configure_logging("INFO", "text", stream=out)
    try:
        log_effective_settings(settings)
    finally:
        setup.undo()
    text = out.getvalue()
    assert "api_token=***" in text and "threads=8" in text
    for secret in (TOKEN, GATEWAY, "pw-SECRET"):
        assert secret not in text


def test_the_server_process_logs_settings_and_requests(tmp_path: Path) -> None:
    server = Server(tmp_path, AUTOBYTEUS_API_TOKEN=TOKEN, AUTOBYTEUS_LOG_FORMAT="json")
    try:
        assert server.call("GET", "/health")[0] == 200
    finally:
        assert server.stop() == 0
    events = [json.loads(line) for line in server.log if line.startswith("{")]
    settings = [e for e in events if "settings" in e]
    assert len(settings) == 1 and settings[0]["settings"]["api_token"] == "***"
    access = [e for e in events if e["logger"] == "web.access"]
    assert [a["http"]["route"] for a in access] == ["/health"]
    assert TOKEN not in "".join(server.log)


def test_a_bad_log_level_stops_the_server_at_start(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "AUTOBYTEUS_DATA_DIR": str(tmp_path),
           "AUTOBYTEUS_LOG_LEVEL": "chatty"}
    out = subprocess.run([sys.executable, "-m", "web", "--port", "0"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "AUTOBYTEUS_LOG_LEVEL" in out.stderr and "Traceback" not in out.stderr
