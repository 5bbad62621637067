"""Edge footprint: an idle server (lmdb) against the bare Falcon app, each in a fresh process.

Start-up: from ``Popen`` to the first 200 on ``/health`` (polled every 2 ms on a port chosen
beforehand). Memory: once the server has answered and rested for a second, its private resident
memory from ``/proc/<pid>/smaps``: Private_Clean + Private_Dirty of every mapping, less the clean
pages of LMDB's ``data.mdb`` mapping (file pages the kernel can drop at any time, and which are
shared with every other reader of the file). ``smaps_rollup``'s plain total is kept in the
results as well. The sources are byte-compiled first, as an installed package's are.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tools.bench.core import Comparison, Config, Sample, Side, Target, Tmp
from tools.bench.http_bench import ROOT, server_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def private_memory_kb(pid: int) -> dict[str, int]:
    """Private resident memory of ``pid`` in kB, with and without LMDB's clean file pages."""
    total = lmdb_clean = 0
    current = ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if not first.endswith(":"):  # a mapping's header line: "addr perms off dev inode path"
                parts = line.split()
                current = parts[5] if len(parts) >= 6 else ""
                continue
            if first in ("Private_Clean:", "Private_Dirty:"):
                kb = int(line.split()[1])
                total += kb
                if first == "Private_Clean:" and current.endswith("/data.mdb"):
                    lmdb_clean += kb
    rollup = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    rollup += int(line.split()[1])
    except OSError:
        pass
    return {"private_kb": total - lmdb_clean, "lmdb_clean_kb": lmdb_clean,
            "rollup_private_kb": rollup}


def start_and_measure(argv: list[str], env: dict[str, str], port: int,
                      settle_s: float) -> Sample:
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv + ["--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = t0 + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited with {proc.returncode} before answering")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{argv} did not answer /health within 60 s")
            time.sleep(0.002)
        startup = time.perf_counter() - t0
        time.sleep(settle_s)
        mem = private_memory_kb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return Sample({"startup_ms": startup * 1000, "private_mb": mem["private_kb"] / 1024},
                  {k: v for k, v in mem.items()})


def compile_sources() -> None:
    """Byte-compile the project, as ``pip install`` does: a start-up must not be timed compiling
    our sources (a shell with PYTHONDONTWRITEBYTECODE=1 would otherwise compile them at every
    start, while the libraries of the bare app come precompiled)."""
    import compileall

    for package in ("engine", "domains", "web", "tools"):
        compileall.compile_dir(str(ROOT / package), quiet=1)


def child_env(env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@contextmanager
def idle_server(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
    settle = 0.3 if cfg.quick else 1.0
    compile_sources()

    def ours() -> Sample:
        env = child_env(server_env(tmp.new("edge")))
        return start_and_measure([sys.executable, "-m", "web"], env, free_port(), settle)

    def bare() -> Sample:
        return start_and_measure([sys.executable, "-m", "tools.bench.bare_app"],
                                 child_env(dict(os.environ)), free_port(), settle)

    yield ours, bare


def comparisons(cfg: Config, tmp: Tmp) -> list[Comparison]:
    def bind(fn: Any) -> Any:
        return lambda: fn(cfg, tmp)

    return [
        Comparison("edge_idle_server", "edge",
                   "idle server after start-up (lmdb, default settings): private RSS, time to "
                   "first 200 on /health", "server (lmdb)", "bare Falcon", bind(idle_server),
                   [Target("private_mb", "<=", 40.0, absolute=True),
                    Target("startup_ms", "<=", 2.0)]),
    ]
