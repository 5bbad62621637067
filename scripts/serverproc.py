"""Helpers of the reliability suites: the real server process, an HTTP client that reports a lost
connection instead of raising, and a stub gateway that receives the outbox's replies.

Used by ``scripts/torture.py`` and ``tests/reliability/``. Nothing here imports the server's own
packages, so a test drives the server exactly as a client would.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVER_COMMAND = [sys.executable, "-m", "web", "--port", "0"]
_LISTENING = re.compile(r"listening on (http://\S+)")


def server_env(provider: str, data_dir: str | os.PathLike[str] | None = None,
               database_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a server (and of ``python -m tools``) on one store."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUTOBYTEUS_", "CHANNEL_", "PERSISTENCE_"))}
    env["PERSISTENCE_PROVIDER"] = provider
    if data_dir is not None:
        env["AUTOBYTEUS_DATA_DIR"] = str(data_dir)
    if database_url:
        env["AUTOBYTEUS_DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ServerProcess:
    """``python -m web --port 0`` in a child process; ``url`` once it printed its address.

    stderr is drained by a thread into ``log`` (so a chatty server never blocks on a full pipe).
    The server leads a process group of its own: with ``--workers N`` its workers are in it, and
    ``kill`` SIGKILLs them all at once, as a crash of the machine would end them.
    """

    def __init__(self, env: Mapping[str, str], *, start_timeout: float = 60.0,
                 command: list[str] | None = None,
                 preexec_fn: Callable[[], None] | None = None) -> None:
        self.log: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            command or SERVER_COMMAND, cwd=ROOT, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
            preexec_fn=preexec_fn, process_group=0,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self._start_timeout = start_timeout

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            if self.url is None:
                match = _LISTENING.search(line)
                if match:
                    self.url = match.group(1)
                    self._ready.set()
        self._ready.set()  # the process ended (or closed stderr)

    def wait_ready(self, timeout: float | None = None) -> str:
        self._ready.wait(self._start_timeout if timeout is None else timeout)
        if self.url is None:
            self.kill()
            raise RuntimeError("the server did not start:\n" + self.text())
        return self.url

    @classmethod
    def start(cls, env: Mapping[str, str], **kwargs: Any) -> ServerProcess:
        server = cls(env, **kwargs)
        server.wait_ready()
        return server

    def text(self) -> str:
        return "".join(self.log)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the server and its workers (its process group), and reap it."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(60)
        self._reader.join(10)

    def workers(self) -> list[int]:
        """The pids of the server's worker processes (``--workers N``; Linux /proc)."""
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def group_alive(self) -> list[int]:
        """Pids still alive in the server's process group (itself included)."""
        alive = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == self.proc.pid and fields[0] != "Z":
                alive.append(int(entry))
        return alive

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (requests in flight finish, the store closes); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._reader.join(10)
        return int(self.proc.returncode)

    def client(self, timeout: float = 30.0) -> Client:
        return Client(self.wait_ready(), timeout=timeout)


class Client:
    """A keep-alive HTTP/1.1 client of one server. ``call`` answers ``(status, body)``;
    status None means no answer came (connection refused, reset or timed out): the outcome of
    a write is then unknown."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self.last_headers: dict[str, str] = {}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def call(self, method: str, path: str, body: Any = None,
             headers: Mapping[str, str] | None = None) -> tuple[int | None, Any]:
        data = None if body is None else json.dumps(body).encode()
        h = {"Accept": "application/json"}
        if data is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        try:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self.timeout)
            self._conn.request(method, path, body=data, headers=h)
            resp = self._conn.getresponse()
            raw = resp.read()
            self.last_headers = {k.lower(): v for k, v in resp.getheaders()}
            if resp.will_close:
                self.close()
        except (OSError, http.client.HTTPException):
            self.close()
            return None, None
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return resp.status, parsed

    def read(self, method: str, path: str, attempts: int = 3) -> tuple[int, Any]:
        """A read that must get an answer (retried on a lost connection)."""
        for _ in range(attempts):
            status, body = self.call(method, path)
            if status is not None:
                return status, body
            time.sleep(0.2)
        raise ConnectionError(f"{method} {path}: no answer from {self.host}:{self.port}")

    def list_all(self, path: str, **params: str) -> list[Any]:
        """Every item of a list endpoint, following nextCursor."""
        items: list[Any] = []
        cursor = None
        while True:
            query = dict(params, limit="1000")
            if cursor:
                query["cursor"] = cursor
            status, page = self.read("GET", f"{path}?{urllib.parse.urlencode(query)}")
            if status != 200:
                raise AssertionError(f"GET {path}: {status} {page}")
            items.extend(page["items"])
            cursor = page["nextCursor"]
            if not cursor:
                return items


class GatewayStub:
    """A gateway's callback endpoint on 127.0.0.1 that accepts every reply (202) and keeps the
    first copy of each by ``callbackIdempotencyKey``, as a real gateway deduplicates."""

    def __init__(self, port: int = 0) -> None:
        self.delivered: dict[str, dict[str, Any]] = {}
        self.copies = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    envelope = json.loads(raw)
                    key = envelope["callbackIdempotencyKey"]
                except (ValueError, KeyError, TypeError):
                    self.send_response(400)
                    self.end_headers()
                    return
                with stub.lock:
                    stub.copies += 1
                    stub.delivered.setdefault(key, envelope)
                body = b'{"accepted":true}'
                try:
                    self.send_response(202)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def keys(self) -> set[str]:
        with self.lock:
            return set(self.delivered)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_tool(env: Mapping[str, str], *args: str, timeout: float = 300.0
             ) -> subprocess.CompletedProcess[str]:
    """``python -m tools ARGS`` on the store named by ``env``."""
    return subprocess.run([sys.executable, "-m", "tools", *args], cwd=ROOT, env=dict(env),
                          capture_output=True, text=True, timeout=timeout)
