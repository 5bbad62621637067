"""``autobyteus-server --workers N``: the processes' life (web/workers.py), real processes.

The races of several workers on one store are in tests/reliability/test_worker_races.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scripts.serverproc import ROOT, SERVER_COMMAND, ServerProcess, server_env
from web.settings import Settings, SettingsError


def _until(condition: Any, timeout: float = 60.0) -> Any:
    """Poll ``condition()`` until it is truthy (no timing is asserted: the timeout only ends a
    hung test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_the_default_is_one_process_and_file_refuses_more() -> None:
    assert Settings.from_env({}).workers == 1
    assert Settings.from_env({"AUTOBYTEUS_WORKERS": "4"}).workers == 4
    with pytest.raises(SettingsError, match="AUTOBYTEUS_WORKERS"):
        Settings.from_env({"AUTOBYTEUS_WORKERS": "0"})
    with pytest.raises(SettingsError, match="file provider is served by one process"):
        Settings.from_env({"PERSISTENCE_PROVIDER": "file", "AUTOBYTEUS_WORKERS": "2"})


def test_file_with_two_workers_exits_2_with_one_line(tmp_path: Path) -> None:
    env = server_env("file", tmp_path)
    out = subprocess.run([*SERVER_COMMAND, "--workers", "2"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "AUTOBYTEUS_WORKERS=2" in lines[0] and "file" in lines[0], lines
    assert not (tmp_path / "file").exists()  # nothing was opened


def test_a_store_that_cannot_open_stops_every_worker_with_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    env = server_env("lmdb", blocker)
    out = subprocess.run([*SERVER_COMMAND, "--workers", "3"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "cannot open the lmdb store" in out.stderr
    assert "listening on" not in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("provider", ["lmdb", "sqlite"])
def test_workers_serve_one_port_are_replaced_when_killed_and_stop_on_sigterm(
    provider: str, tmp_path: Path,
) -> None:
    env = server_env(provider, tmp_path, AUTOBYTEUS_WORKERS="3", AUTOBYTEUS_THREADS="2")
    server = ServerProcess.start(env)
    try:
        workers = _until(lambda: len(server.workers()) == 3 and server.workers())
        assert len(workers) == 3, server.text()
        client = server.client()
        status, health = client.call("GET", "/health")
        assert status == 200 and health["workers"] == 3 and health["provider"] == provider

        # Requests on many connections: each lands on a worker; every write is there for all.
        clients = [server.client() for _ in range(12)]
        for i, c in enumerate(clients):
            status, body = c.call("POST", "/rest/api/prompts", {
                "name": f"p{i}", "category": "workers", "promptContent": "x"})
            assert status == 201, body
        for c in clients:
            items = c.list_all("/rest/api/prompts", category="workers")
            assert sorted(p["name"] for p in items) == sorted(f"p{i}" for i in range(12))
            c.close()

        # A worker killed outright is replaced; the others serve meanwhile.
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        replaced = _until(lambda: (len(w := server.workers()) == 3 and victim not in w) and w)
        assert replaced and victim not in replaced and set(workers[1:]) <= set(replaced), \
            server.text()
        assert f"worker 0 (pid {victim}) ended (signal 9)" in server.text()
        (new,) = set(replaced) - set(workers)
        assert _until(lambda: f"worker 0 (pid {new}) ready" in server.text()), server.text()
        fresh = server.client()
        # The replacement serves too: new connections until one lands on it would be a timing
        # game; every connection of a fresh batch gets an answer instead.
        for _ in range(6):
            assert fresh.call("GET", "/health")[0] == 200
            fresh.close()
        status, _ = fresh.call("POST", "/rest/api/prompts", {
            "name": "after", "category": "workers", "promptContent": "y"})
        assert status == 201
        fresh.close()
        client.close()
        group = server.group_alive()
        assert len(group) == 4, group  # the parent and its three workers
    finally:
        code = server.stop()
    # SIGTERM to the parent: every worker closed its store and ended, the parent exits 0.
    assert code == 0, server.text()
    assert server.text().count("stopped; the store is closed") == 3, server.text()
    assert _until(lambda: not server.group_alive(), 30) or not server.group_alive()
    assert "Traceback" not in server.text()


def test_workers_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    env = server_env("lmdb", tmp_path, AUTOBYTEUS_WORKERS="2", AUTOBYTEUS_THREADS="2")
    server = ServerProcess.start(env)
    try:
        workers = _until(lambda: len(server.workers()) == 2 and server.workers())
        assert len(workers) == 2
        server.proc.send_signal(signal.SIGKILL)  # the parent alone
        server.proc.wait(60)

        def gone() -> bool:
            return not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z"
                           for pid in workers)
        # No orphan keeps serving the port (the kernel sends each SIGTERM when the parent dies).
        # Whether each also logged its clean stop is not asserted: in two runs of the whole
        # suite on a loaded machine their last lines did not arrive, which is not explained yet.
        assert _until(gone), [(_state(p)) for p in workers]
    finally:
        server.kill()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_python_dash_m_web_accepts_the_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "web", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert "--workers" in out.stdout and "AUTOBYTEUS_WORKERS" in out.stdout


def test_metrics_count_every_workers_requests_whichever_worker_answers(tmp_path: Path) -> None:
    """--workers N shares one prometheus_client multiprocess directory (made for the workers when
    PROMETHEUS_MULTIPROC_DIR is unset, removed at the end): a scrape answered by any worker sums
    the requests of all of them."""
    import re
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    env = server_env("lmdb", tmp_path, AUTOBYTEUS_WORKERS="2", AUTOBYTEUS_THREADS="2")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = ServerProcess.start(env)

    def get(path: str) -> str:
        # A new connection each time: the kernel hands each to one of the workers.
        with urllib.request.urlopen(server.url + path, timeout=30) as answer:
            assert answer.status == 200
            return str(answer.read().decode())

    try:
        assert _until(lambda: len(server.workers()) == 2)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: get("/health"), range(40)))
        pattern = re.compile(
            r'^autobyteus_http_requests_total\{[^}]*route="/health"[^}]*\} (\S+)$', re.M)
        for _ in range(10):  # scrapes on fresh connections, answered by either worker
            counted = sum(float(v) for v in pattern.findall(get("/metrics")))
            assert counted == 40
        shared = [p for p in Path("/tmp").glob("autobyteus-metrics-*")
                  if any(p.glob("*.db"))]
        assert shared, "no multiprocess metrics directory was made for the workers"
    finally:
        code = server.stop()
    assert code == 0, server.text()
