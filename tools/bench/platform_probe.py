"""Facts about the platform that bound the durable-write figures.

``python -m tools.bench.platform_probe [--seconds 1] [--json]`` (about 12 s).

Three measurements, each against itself in the same run (no target, nothing of ours beyond
``engine.keys.pack`` as a unit of Python work):

- **py-lmdb and the GIL**: calls per second of a py-lmdb operation alone, and while one other
  thread runs Python. py-lmdb releases the GIL around every LMDB call (``get``, ``put``, and each
  item of ``putmulti`` and ``getmulti``), so with a competing thread every call waits to get the
  GIL back.
- **a thread hand-over**: round trips per second of two threads passing a turn back and forth
  through locks (what a writer mutex or a flush wake-up costs), free to run on every CPU and pinned
  to one.
- **Python after a sleep**: CPU time of the same unit of Python work run back to back, and with a
  short sleep before each (a thread that waited for a flush), as caches go cold.

The results explain the misses the README lists; they are not targets.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import lmdb

from engine.keys import pack


def _rate(fn: Callable[[], Any], seconds: float, per_call: int = 1) -> float:
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        fn()
        n += 1
        now = time.perf_counter()
        if now >= deadline:
            return n * per_call / (now - start)


def _with_competitor(fn: Callable[[], float]) -> float:
    """``fn()`` while another thread runs pure Python."""
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            for _ in range(1000):
                x += 1

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        time.sleep(0.01)
        return fn()
    finally:
        stop.set()
        t.join()


def lmdb_gil(seconds: float) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        env = lmdb.open(d, map_size=1 << 28)
        items = [(b"key%06d" % i, b"v" * 300) for i in range(1000)]
        keys = [k for k, _ in items]
        with env.begin(write=True) as txn:
            txn.cursor().putmulti(items)
        reader = env.begin()
        writer = env.begin(write=True)
        ops: list[tuple[str, Callable[[], Any], int]] = [
            ("get (read txn)", lambda: reader.get(b"key000500"), 1),
            ("put (write txn)", lambda: writer.put(b"key000500", b"w" * 300), 1),
            ("putmulti, per item", lambda: writer.cursor().putmulti(items), len(items)),
            ("getmulti, per item", lambda: reader.cursor().getmulti(keys), len(keys)),
        ]
        try:
            for name, fn, per_call in ops:
                def measure(fn: Callable[[], Any] = fn, per_call: int = per_call) -> float:
                    return _rate(fn, seconds, per_call)

                alone = measure()
                contended = _with_competitor(measure)
                rows.append({"operation": name, "alone_per_s": alone,
                             "with_a_python_thread_per_s": contended,
                             "ratio": contended / alone})
        finally:
            writer.abort()
            reader.abort()
            env.close()
    return rows


def _ping_pong(seconds: float) -> float:
    """Round trips per second of two threads taking turns through two locks."""
    ping, pong = threading.Lock(), threading.Lock()
    ping.acquire()
    pong.acquire()
    stop = [False]

    def other() -> None:
        while True:
            ping.acquire()
            if stop[0]:
                return
            pong.release()

    t = threading.Thread(target=other, daemon=True)
    t.start()
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        ping.release()
        pong.acquire()
        n += 1
    elapsed = time.perf_counter() - start
    stop[0] = True
    ping.release()
    t.join()
    return n / elapsed


def hand_over(seconds: float) -> list[dict[str, Any]]:
    rows = [{"placement": "free (every CPU)", "round_trips_per_s": _run_child("pingpong", seconds)}]
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) > 1:
        rows.append({"placement": f"pinned to CPU {cpus[0]}",
                     "round_trips_per_s": _run_child("pingpong", seconds, pin=cpus[0])})
    return rows


def _run_child(what: str, seconds: float, pin: int | None = None) -> float:
    # A child process, so that pinning it leaves this one (and its threads) alone.
    argv = [sys.executable, "-m", "tools.bench.platform_probe", "--child", what,
            "--seconds", str(seconds)]
    if pin is not None:
        argv += ["--pin", str(pin)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return float(out.stdout.strip().splitlines()[-1])


def _python_unit() -> None:
    for i in range(200):
        pack(("c", "token_usage", "o", "by_time", 1_700_000_000_000 + i, i))


def after_sleep(units: int, nap_s: float = 0.0003) -> list[dict[str, Any]]:
    rows = []
    for label, nap in (("back to back", 0.0), (f"after a {nap_s * 1e6:.0f} µs sleep", nap_s)):
        _python_unit()
        r0 = resource.getrusage(resource.RUSAGE_THREAD)
        for _ in range(units):
            if nap:
                time.sleep(nap)
            _python_unit()
        r1 = resource.getrusage(resource.RUSAGE_THREAD)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        rows.append({"unit": label, "cpu_us_per_unit": cpu / units * 1e6})
    return rows


def run(seconds: float) -> dict[str, Any]:
    return {
        "lmdb_gil": lmdb_gil(seconds),
        "hand_over": hand_over(seconds),
        "after_sleep": after_sleep(max(50, int(seconds * 2000))),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = ["| py-lmdb operation | alone /s | with one Python thread /s | ratio |",
             "|---|---|---|---|"]
    for r in result["lmdb_gil"]:
        lines.append(f"| {r['operation']} | {r['alone_per_s']:,.0f} | "
                     f"{r['with_a_python_thread_per_s']:,.0f} | {r['ratio']:.3f}× |")
    lines += ["", "| two threads taking turns through locks | round trips /s |", "|---|---|"]
    for r in result["hand_over"]:
        lines.append(f"| {r['placement']} | {r['round_trips_per_s']:,.0f} |")
    lines += ["", "| the same Python work (200 key packs) | CPU µs per unit |", "|---|---|"]
    for r in result["after_sleep"]:
        lines.append(f"| {r['unit']} | {r['cpu_us_per_unit']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench.platform_probe",
                                description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=1.0, help="per measurement (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    p.add_argument("--child", choices=("pingpong",), help=argparse.SUPPRESS)
    p.add_argument("--pin", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        if args.pin is not None:
            os.sched_setaffinity(0, {args.pin})
        print(_ping_pong(args.seconds))
        return 0
    result = run(args.seconds)
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
