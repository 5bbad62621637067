"""Crash test, per backend: SIGKILL a writing process at random moments, then check the store.

After each kill the store is reopened and must hold every acknowledged commit, and no transaction
may be partly visible (each writes four keys; all four or none). The store accumulates over the
rounds, so later rounds also recover a store that has survived earlier kills.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine import open_store

KILLS_PER_BACKEND = int(os.environ.get("CRASH_KILLS", "20"))
ROOT = Path(__file__).resolve().parents[2]


def _run_and_kill(provider: str, location: dict, round_: int, rng: random.Random) -> set:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.engine.crash_child", provider, json.dumps(location),
         str(round_), "4"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    acked: set[tuple[int, int]] = set()
    first_ack = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if parts and parts[0] == "ACK":
                acked.add((int(parts[1]), int(parts[2])))
                first_ack.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ok = first_ack.wait(60)
    if not ok:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        pytest.fail(f"the child never acknowledged a commit: {err[-2000:]}")
    time.sleep(rng.uniform(0.0, 0.25))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    reader.join(30)
    if proc.stderr:
        proc.stderr.close()
    return acked


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_commit(make_store, backend: str) -> None:
    rng = random.Random(os.getpid())
    location = make_store.location(backend)
    make_store.open(backend, location).close()  # create it, so children race on nothing else
    total_acked = 0
    for round_ in range(KILLS_PER_BACKEND):
        acked = _run_and_kill(backend, location, round_, rng)
        total_acked += len(acked)
        store = open_store(backend, **location)
        try:
            with store.begin() as txn:
                rows = dict(txn.scan(prefix=f"r{round_}/".encode()))
        finally:
            store.close()
        for t, seq in acked:
            for part in "abc":
                assert f"r{round_}/t{t}/{seq:08d}/{part}".encode() in rows, (round_, t, seq)
        # atomicity: every transaction that is visible at all is visible whole
        seqs: dict[tuple[int, int], set[str]] = {}
        lasts: dict[int, int] = {}
        for key in rows:
            parts = key.decode().split("/")
            t = int(parts[1][1:])
            if parts[2] == "last":
                lasts[t] = int(rows[key])
            else:
                seqs.setdefault((t, int(parts[2])), set()).add(parts[3])
        for ident, found in seqs.items():
            assert found == {"a", "b", "c"}, (round_, ident, found)
        for t, last in lasts.items():
            present = sorted(s for (tt, s) in seqs if tt == t)
            assert present == list(range(1, last + 1)), (round_, t, last)
        for t, seq in acked:
            assert lasts[t] >= seq
    assert total_acked > KILLS_PER_BACKEND  # the children really wrote
