"""Injected faults against the real server process (issue 8).

- A failing fsync: an ``LD_PRELOAD`` library (built here with the C compiler) makes ``fsync`` and
  ``fdatasync`` fail with EIO while a flag file exists, in the server process only. That is the
  real failure path of all three embedded backends (LMDB and SQLite call them from C, the file
  store through ``os.fsync``). Without a compiler, the file backend is still tested in-process.
- A full disk, two ways: a file-size limit on the server process (``prlimit --fsize``, EFBIG) and
  a small tmpfs (ENOSPC; needs root and mount, skipped otherwise).
- A read-only data directory: a read-only bind mount (root), or permission bits (not root).
- PostgreSQL stopped and restarted under load (the session's throwaway cluster).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from scripts.serverproc import ROOT, SERVER_COMMAND, Client, ServerProcess, run_tool, server_env
from tests.reliability.conftest import LONG

EMBEDDED = ("lmdb", "file", "sqlite")

FAILSYNC_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

/* fsync and fdatasync fail with EIO while the file named by FAILSYNC_FLAG exists. */
static int failing(void) {
    const char *flag = getenv("FAILSYNC_FLAG");
    return flag != NULL && access(flag, F_OK) == 0;
}
int fsync(int fd) {
    static int (*real)(int);
    if (failing()) { errno = EIO; return -1; }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
int fdatasync(int fd) {
    static int (*real)(int);
    if (failing()) { errno = EIO; return -1; }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
"""


def prompt(name: str, size: int = 1) -> dict[str, Any]:
    return {"name": name, "category": "faults", "promptContent": "x" * size}


def names(client: Client) -> set[str]:
    return {p["name"] for p in client.list_all("/rest/api/prompts")}


def assert_clean_check(env: dict[str, str]) -> None:
    out = run_tool(env, "check")
    assert out.returncode == 0, out.stdout + out.stderr


# -- a failing fsync ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def failsync_lib(tmp_path_factory: pytest.TempPathFactory) -> str:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler to build the fsync-failing LD_PRELOAD library")
    where = tmp_path_factory.mktemp("failsync")
    (where / "failsync.c").write_text(FAILSYNC_C)
    lib = where / "failsync.so"
    out = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib),
                          str(where / "failsync.c"), "-ldl"], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot build the LD_PRELOAD library: {out.stderr[-500:]}")
    return str(lib)


@pytest.mark.parametrize("provider", EMBEDDED)
def test_failing_fsync_fails_the_write_and_keeps_earlier_data(
    provider: str, tmp_path: Path, failsync_lib: str
) -> None:
    flag = tmp_path / "fail-fsync"
    # No background writer (the TTL sweeper) may meet the injected failure: only our requests.
    env = server_env(provider, tmp_path / "data", LD_PRELOAD=failsync_lib,
                     FAILSYNC_FLAG=str(flag), AUTOBYTEUS_TTL_SWEEP_INTERVAL_SECONDS="86400")
    server = ServerProcess.start(env)
    try:
        c = server.client()
        acked = []
        for i in range(3):
            status, p = c.call("POST", "/rest/api/prompts", prompt(f"before-{i}"))
            assert status == 201, p
            acked.append(p)
        flag.touch()
        for body in (prompt("failed"), {"agentId": "a", "promptTokens": 1,
                                        "completionTokens": 1}):
            path = "/rest/api/prompts" if "name" in body else \
                "/rest/api/token-usage/conversations"
            status, err = c.call("POST", path, body)
            assert status == 503 and err["code"] == "STORAGE_FAILURE", (status, err)
            assert c.last_headers.get("retry-after")
        # earlier data still reads back, and the failed write is not visible
        for p in acked:
            assert c.call("GET", f"/rest/api/prompts/{p['id']}") == (200, p)
        assert names(c) == {"before-0", "before-1", "before-2"}
        flag.unlink()
        status, p = c.call("POST", "/rest/api/prompts", prompt("after"))
        assert status == 201, p
        acked.append(p)
        # fail once more and crash right away: nothing acknowledged is lost on restart
        flag.touch()
        assert c.call("POST", "/rest/api/prompts", prompt("doomed"))[0] == 503
        server.kill()
        flag.unlink()
        assert "Traceback" not in server.text(), server.text()
        server = ServerProcess.start(env)
        c = server.client()
        for p in acked:
            assert c.call("GET", f"/rest/api/prompts/{p['id']}") == (200, p)
        found = names(c)
        assert {"before-0", "before-1", "before-2", "after"} <= found
        assert "failed" not in found
        if provider != "sqlite":
            # SQLite wrote the commit frame into its WAL before the failed sync; WAL recovery
            # after a crash may replay it, so there a 503 STORAGE_FAILURE means "unknown".
            assert "doomed" not in found
        assert c.call("POST", "/rest/api/prompts", prompt("later"))[0] == 201
        assert server.stop() == 0
    finally:
        server.kill()
    assert_clean_check(env)


def test_failing_fsync_in_process_file_store(make_store: Any, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    """The same through create_app and falcon.testing, no compiler needed (the file backend
    calls os.fsync)."""
    from engine import open_store
    from web.app import create_app
    from web.settings import Settings

    location = make_store.location("file")
    store = open_store("file", **location)
    try:
        client = falcon.testing.TestClient(create_app(store, Settings(provider="file")))
        first = client.simulate_post("/rest/api/prompts", json=prompt("kept"))
        assert first.status_code == 201

        def failing_fsync(fd: int) -> None:
            raise OSError(5, "Input/output error (injected)")

        monkeypatch.setattr(os, "fsync", failing_fsync)
        failed = client.simulate_post("/rest/api/prompts", json=prompt("lost"))
        assert failed.status_code == 503 and failed.json["code"] == "STORAGE_FAILURE"
        assert "Input/output" not in failed.text  # driver text goes to the log only
        assert client.simulate_get(f"/rest/api/prompts/{first.json['id']}").json == first.json
        monkeypatch.undo()
        assert client.simulate_post("/rest/api/prompts", json=prompt("next")).status_code == 201
    finally:
        store.close()
    store = open_store("file", **location)
    try:
        client = falcon.testing.TestClient(create_app(store, Settings(provider="file")))
        got = {p["name"] for p in client.simulate_get("/rest/api/prompts").json["items"]}
        assert got == {"kept", "next"}
    finally:
        store.close()


# -- a full disk ----------------------------------------------------------------------------------
def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    if not _can_mount():
        pytest.skip("mounting a small tmpfs needs root")
    where = Path(tempfile.mkdtemp(prefix="autobyteus-full-"))
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "tmpfs",
                          str(where)], capture_output=True, text=True)
    if out.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        shutil.rmtree(where, ignore_errors=True)


def _fill_until_full(c: Client) -> list[dict[str, Any]]:
    """Write 100 KB prompts until the store refuses; the acknowledged ones."""
    acked = []
    for i in range(400):
        status, body = c.call("POST", "/rest/api/prompts", prompt(f"big-{i}", 100_000))
        if status == 201:
            acked.append(body)
            continue
        assert status == 507, (status, body)
        assert body["code"] == "INSUFFICIENT_STORAGE"
        return acked
    raise AssertionError("the store never filled up")


def _limited_command(limit: int) -> tuple[list[str], Any]:
    if shutil.which("prlimit"):
        return ["prlimit", f"--fsize={limit}", *SERVER_COMMAND], None

    def preexec() -> None:  # CPython ignores SIGXFSZ already; the write fails with EFBIG
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return SERVER_COMMAND, preexec


@pytest.mark.parametrize("provider", EMBEDDED)
def test_file_size_limit_answers_507_and_the_store_reopens_clean(provider: str,
                                                                 tmp_path: Path) -> None:
    env = server_env(provider, tmp_path / "data")
    command, preexec = _limited_command(2 << 20)
    server = ServerProcess.start(env, command=command, preexec_fn=preexec)
    try:
        c = server.client()
        acked = _fill_until_full(c)
        assert acked, "nothing fitted under the limit"
        # the server is still up: reads work, and a write that fits still may go through
        assert c.call("GET", f"/rest/api/prompts/{acked[0]['id']}") == (200, acked[0])
        assert server.stop() == 0, server.text()
    finally:
        server.kill()
    assert "Traceback" not in server.text(), server.text()
    server = ServerProcess.start(env)  # no limit now
    try:
        c = server.client()
        for p in acked:
            assert c.call("GET", f"/rest/api/prompts/{p['id']}") == (200, p)
        assert c.call("POST", "/rest/api/prompts", prompt("after", 100_000))[0] == 201
        assert server.stop() == 0
    finally:
        server.kill()
    assert_clean_check(env)


@pytest.mark.parametrize("provider", EMBEDDED)
def test_full_filesystem_answers_507_and_the_store_reopens_clean(
    provider: str, small_tmpfs: Path
) -> None:
    env = server_env(provider, small_tmpfs / "data")
    server = ServerProcess.start(env)
    try:
        c = server.client()
        acked = _fill_until_full(c)
        assert acked
        assert c.call("GET", f"/rest/api/prompts/{acked[-1]['id']}") == (200, acked[-1])
        assert server.stop() == 0, server.text()
        # reopens on the still-full filesystem and serves what it holds
        server = ServerProcess.start(env)
        c = server.client()
        for p in acked:
            assert c.call("GET", f"/rest/api/prompts/{p['id']}") == (200, p)
        status, _ = c.call("POST", "/rest/api/prompts", prompt("still-full", 400_000))
        assert status == 507
        # space comes back: writes work again, without a restart
        subprocess.run(["mount", "-o", "remount,size=32m", str(small_tmpfs)], check=True)
        assert c.call("POST", "/rest/api/prompts", prompt("after", 100_000))[0] == 201
        assert server.stop() == 0
    finally:
        server.kill()
    assert "Traceback" not in server.text(), server.text()
    assert_clean_check(env)


# -- a read-only data directory -------------------------------------------------------------------
def _make_existing_store(provider: str, data_dir: Path) -> None:
    from domains.prompts.commands import CreatePrompt
    from domains.registry import build_services
    from domains.shapes import parse
    from engine import open_store

    store = open_store(provider, data_dir=str(data_dir))
    try:
        build_services(store).prompts.create(parse(CreatePrompt, prompt("existing")))
    finally:
        store.close()


@pytest.fixture
def read_only() -> Iterator[Any]:
    """A function making a directory read-only for the server, by whatever works here."""
    mounted: list[str] = []

    def make(path: Path) -> None:
        if os.geteuid() != 0:
            for dirpath, _dirnames, filenames in os.walk(path):
                for name in filenames:
                    os.chmod(os.path.join(dirpath, name), 0o444)
                os.chmod(dirpath, 0o555)
            return
        if not _can_mount():
            pytest.skip("root ignores permission bits and cannot mount here")
        out = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True,
                             text=True)
        if out.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {out.stderr.strip()}")
        mounted.append(str(path))
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)

    yield make
    for path in mounted:
        subprocess.run(["umount", path], capture_output=True)


@pytest.mark.parametrize("existing", [False, True], ids=["empty", "existing"])
@pytest.mark.parametrize("provider", EMBEDDED)
def test_read_only_data_directory_fails_at_startup_with_a_clear_message(
    provider: str, existing: bool, tmp_path: Path, read_only: Any
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    if existing:
        _make_existing_store(provider, data)
    read_only(data)
    try:
        out = subprocess.run(SERVER_COMMAND, cwd=ROOT, env=server_env(provider, data),
                             capture_output=True, text=True, timeout=60)
    finally:
        if os.geteuid() != 0:
            subprocess.run(["chmod", "-R", "u+w", str(data)])
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    message = out.stderr.strip().splitlines()[-1]
    assert message.startswith(f"autobyteus-server: cannot open the {provider} store"), message
    assert str(data) in message, message
    assert any(word in message.lower() for word in ("read-only", "permission denied",
                                                    "not writable")), message


# -- PostgreSQL restarted under load ------------------------------------------------------------
def test_postgresql_restart_under_load_fails_fast_with_503_and_recovers(pg_cluster: Any) -> None:
    if not pg_cluster.managed:
        pytest.skip("the PostgreSQL server is external; it cannot be restarted by the tests")
    url = pg_cluster.create_database(f"pgrestart_{os.getpid()}")
    server = ServerProcess.start(server_env("postgresql", None, url))
    pid = server.proc.pid
    answers: list[tuple[int | None, float, Any, str | None]] = []
    acked: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(i: int) -> None:
        c = server.client(timeout=120)
        n = 0
        while not stop.is_set():
            n += 1
            started = time.monotonic()
            if n % 2:
                status, body = c.call("POST", "/rest/api/prompts", prompt(f"p-{i}-{n}"))
            else:
                status, body = c.call("GET", "/rest/api/prompts?limit=5")
            took = time.monotonic() - started
            with lock:
                answers.append((status, took, body, c.last_headers.get("retry-after")))
                if status == 201:
                    acked.append(body)
            time.sleep(0.005)
        c.close()

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(4)]
    restarts = 6 if LONG else 1
    try:
        for t in threads:
            t.start()
        probe = server.client(timeout=120)
        for r in range(restarts):
            time.sleep(1.0)
            pg_cluster.stop_server("immediate" if r % 2 else "fast")
            try:
                # while the database is down, requests fail fast with 503 and Retry-After
                for method, path, body in (("GET", "/rest/api/prompts", None),
                                           ("POST", "/rest/api/prompts", prompt(f"down-{r}"))):
                    started = time.monotonic()
                    status, err = probe.call(method, path, body)
                    assert time.monotonic() - started < 10, "a request hung on a down database"
                    assert status == 503 and err["code"] == "BACKEND_UNAVAILABLE", (status, err)
                    assert probe.last_headers.get("retry-after")
                time.sleep(0.5)
            finally:
                pg_cluster.start_server()
            # and the same server process recovers by itself
            deadline = time.monotonic() + 30
            while True:
                status, body = probe.call("POST", "/rest/api/prompts", prompt(f"up-{r}"))
                if status == 201:
                    acked.append(body)
                    break
                assert status == 503, (status, body)
                assert time.monotonic() < deadline, "the server did not recover"
                time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        alive = server.alive()
        server.stop()
    assert alive and server.proc.pid == pid
    statuses = Counter(a[0] for a in answers)
    assert set(statuses) <= {200, 201, 503}, statuses
    assert statuses[503] > 0 and statuses[201] > 0, statuses
    for status, took, body, retry_after in answers:
        assert took < 30, (status, took, body)
        if status == 503:
            assert body["code"] == "BACKEND_UNAVAILABLE" and retry_after, body
    assert "Traceback" not in server.text(), server.text()
    # nothing acknowledged was lost across the restarts
    server = ServerProcess.start(server_env("postgresql", None, url))
    try:
        found = {p["id"]: p for p in server.client().list_all("/rest/api/prompts")}
        for p in acked:
            assert found.get(p["id"]) == p
    finally:
        server.stop()
