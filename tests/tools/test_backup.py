"""backup: a hot consistent copy (lmdb, sqlite, file) that opens as a store; postgresql points
at pg_dump with its own exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.tools.helpers import WRITER, check_snapshot, contents, fill, flags, tool

ROOT = Path(__file__).resolve().parents[2]


def test_backup_copies_the_store(make_store, backend, tmp_path, capsys):
    loc = make_store.location(backend)
    store = make_store.open(backend, loc)
    fill(store)
    store.close()
    dest = tmp_path / "backup"
    rc = tool("backup", str(dest), *flags(backend, loc))
    err = capsys.readouterr().err
    if backend == "postgresql":
        assert rc == 7 and "pg_dump" in err and "Traceback" not in err
        return
    assert rc == 0, err
    copy = {"data_dir": str(dest)}
    assert contents(backend, copy) == contents(backend, loc)
    assert tool("backup", str(dest), *flags(backend, loc)) == 6  # never over an existing copy
    assert tool("check", *flags(backend, copy)) == 0


def test_backup_of_a_missing_store(tmp_path):
    assert tool("backup", str(tmp_path / "b"), "--provider", "lmdb",
                "--data-dir", str(tmp_path / "none")) == 3
    assert not os.path.exists(tmp_path / "b" / "lmdb" / "data.mdb")


def test_backup_while_another_process_writes(make_store, tmp_path):
    for backend in ("lmdb", "sqlite", "file"):
        loc = make_store.location(backend)
        make_store.open(backend, loc).close()
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, backend, json.dumps(loc)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            dest = tmp_path / f"hot-{backend}"
            assert tool("backup", str(dest), *flags(backend, loc)) == 0
            proc.stdin.close()
            total = int(proc.stdout.readline())
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
        n = check_snapshot(contents(backend, {"data_dir": str(dest)}))
        assert 30 <= n <= total, backend
