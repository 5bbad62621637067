"""The real server process for the hostile-client tests: started with ``python -m web --port 0``,
its stderr drained by a thread (a full pipe would stall a server that logs under load) and kept."""

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
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]


class RunningServer:
    def __init__(self, data_dir: Path, **env: str) -> None:
        environ = dict(os.environ, PERSISTENCE_PROVIDER="lmdb", AUTOBYTEUS_DATA_DIR=str(data_dir))
        for name in ("AUTOBYTEUS_API_TOKEN", "CHANNEL_GATEWAY_SHARED_SECRET",
                     "CHANNEL_CALLBACK_SHARED_SECRET", "CHANNEL_CALLBACK_BASE_URL"):
            environ.pop(name, None)
        environ.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "web", "--port", "0"], cwd=ROOT, env=environ,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        started = threading.Event()
        self.url = ""

        def drain(stream: Any) -> None:
            for line in stream:
                with self._lock:
                    self._lines.append(line)
                match = re.search(r"listening on (http://\S+)", line)
                if match and not started.is_set():
                    self.url = match.group(1)
                    started.set()
            started.set()

        assert self.proc.stderr is not None and self.proc.stdout is not None
        self._threads = [threading.Thread(target=drain, args=(s,), daemon=True)
                         for s in (self.proc.stderr, self.proc.stdout)]
        for thread in self._threads:
            thread.start()
        if not started.wait(60) or not self.url:
            self.proc.kill()
            raise AssertionError("the server did not start:\n" + self.log)
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    @property
    def log(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None, raw: bytes | None = None,
                timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection: (status, headers, body bytes)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {"Connection": "close", **(headers or {})}
        if data is not None:
            all_headers.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=all_headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        status, _, raw = self.request(method, path, body, headers)
        return status, json.loads(raw) if raw else None

    def rss_kib(self) -> int:
        """The process's resident memory (VmRSS of /proc/<pid>/status), in KiB."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
        assert match, text
        return int(match.group(1))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for thread in self._threads:
            thread.join(10)
        return self.proc.returncode


def wait_until(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
