"""The real server process (``python -m web``) for the tests that drive it over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class Server:
    def __init__(self, data_dir: Path, provider: str = "lmdb",
                 command: list[str] | None = None, **env: str) -> None:
        environ = dict(os.environ, PERSISTENCE_PROVIDER=provider,
                       AUTOBYTEUS_DATA_DIR=str(data_dir), **env)
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "web", "--port", "0"], cwd=ROOT, env=environ,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.log: list[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            match = re.search(r"(?:listening|Serving) on (http://\S+)", line)
            if match:
                self.url = match.group(1)
                break
        else:
            raise AssertionError("the server did not start:\n" + "".join(self.log))
        # The server logs a line per request: keep reading, or a full pipe would block it.
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    def _read_rest(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

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

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        self.proc.wait(60)
        self._drain.join(30)
        return self.proc.returncode
