"""The harness: comparisons run interleaved against their baselines, reduced to median ratios.

A :class:`Comparison` pairs a *subject* (our code) with a *baseline* (the raw library, a bare
server, the same code at a smaller size). Each side is a callable that takes one measurement and
returns a :class:`Sample` (a few named metrics). The runner calls them alternately, A B B A A B ...,
for several rounds, so that drift on a shared machine (another test run starting, a CPU
throttling) hits both sides alike; each round gives one ratio per metric, and the reported figure
is the median of those ratios. Absolute numbers are kept too, but on a noisy machine only the
ratios mean much.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

#: Metrics where more is better; every other metric (latency, time, memory) is better smaller.
HIGHER_IS_BETTER = frozenset({"ops_per_s"})


@dataclass
class Config:
    """Sizes and durations of one run (``quick`` shrinks everything)."""

    quick: bool = False
    rounds: int = 5
    #: Seconds per engine measurement (one side, one round).
    engine_seconds: float = 1.0
    #: Seconds per HTTP load run.
    http_seconds: float = 3.0
    http_connections: int = 16
    #: Waitress threads, the same on both sides: the server's default (web/settings.py) unless
    #: set (``--http-threads``).
    http_threads: int = field(default_factory=lambda: server_default_threads())
    #: Records stored for point reads.
    read_keys: int = 10_000
    value_size: int = 300
    #: Scale workloads: the small and the large store.
    scale_small: int = 10_000
    scale_large: int = 1_000_000
    file_small: int = 1_000
    file_large: int = 100_000
    thread_counts: tuple[int, ...] = (16, 64)
    slow_flush_s: float = 0.005
    #: "wrk", "python", or "auto" (wrk when installed).
    load_generator: str = "auto"
    workdir: str = ""

    @classmethod
    def make(cls, quick: bool, **overrides: Any) -> Config:
        if quick:
            base = cls(
                quick=True, rounds=3, engine_seconds=0.4, http_seconds=2, read_keys=10_000,
                scale_large=100_000, file_large=30_000,
            )
        else:
            base = cls()
        for k, v in overrides.items():
            if v is not None:
                setattr(base, k, v)
        return base


def server_default_threads() -> int:
    """The request threads ``python -m web`` runs with when nothing sets them."""
    from web.settings import Settings

    return Settings.from_env({}).threads


@dataclass
class Sample:
    metrics: dict[str, float]
    #: Free-form facts about the measurement (ops done, errors, sizes).
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    """``metric`` ratio (subject / baseline) must be ``op`` ``value`` (op: ">=" or "<=").

    With ``absolute`` the subject's own metric is compared to ``value`` (no baseline)."""

    metric: str
    op: str
    value: float
    absolute: bool = False

    def met(self, x: float | None) -> bool | None:
        if x is None:
            return None
        return x >= self.value if self.op == ">=" else x <= self.value

    def text(self) -> str:
        unit = "" if self.absolute else "×"
        return f"{self.metric} {self.op} {self.value:g}{unit}"


Side = Callable[[], Sample]


@dataclass
class Comparison:
    name: str
    group: str
    description: str
    subject_label: str
    baseline_label: str | None
    #: Entered once around all rounds; yields (subject, baseline) measurement callables.
    setup: Callable[[], AbstractContextManager[tuple[Side, Side | None]]]
    targets: list[Target] = field(default_factory=list)
    note: str = ""


@dataclass
class Outcome:
    name: str
    group: str
    description: str
    subject_label: str
    baseline_label: str | None
    rounds: list[dict[str, Any]]
    subject: dict[str, float]  # median of each metric
    baseline: dict[str, float]
    ratios: dict[str, float]  # median per-round ratio subject / baseline
    targets: list[dict[str, Any]]
    seconds: float
    note: str = ""
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def run_comparison(comp: Comparison, rounds: int, log: Callable[[str], None]) -> Outcome:
    started = time.perf_counter()
    per_round: list[dict[str, Any]] = []
    try:
        with comp.setup() as (subject, baseline):
            for r in range(rounds):
                # A B, B A, A B ...: neither side always runs first (caches, CPU boost, drift).
                order = ("subject", "baseline") if r % 2 == 0 else ("baseline", "subject")
                samples: dict[str, Sample] = {}
                for side in order:
                    fn = subject if side == "subject" else baseline
                    if fn is not None:
                        samples[side] = fn()
                row: dict[str, Any] = {
                    "subject": samples["subject"].metrics,
                    "subject_info": samples["subject"].info,
                }
                if "baseline" in samples:
                    b = samples["baseline"].metrics
                    row["baseline"] = b
                    row["baseline_info"] = samples["baseline"].info
                    row["ratio"] = {
                        m: (v / b[m]) if b.get(m) else float("nan")
                        for m, v in samples["subject"].metrics.items()
                        if m in b
                    }
                per_round.append(row)
                log(f"  round {r + 1}/{rounds}: " + _round_text(row))
    except Exception as exc:  # one broken workload must not lose the others' results
        log(f"  FAILED: {type(exc).__name__}: {exc}")
        return Outcome(comp.name, comp.group, comp.description, comp.subject_label,
                       comp.baseline_label, per_round, {}, {}, {}, [
                           {**t.__dict__, "text": t.text(), "measured": None, "met": None}
                           for t in comp.targets
                       ], time.perf_counter() - started, comp.note,
                       error=f"{type(exc).__name__}: {exc}")
    subject_m = _collect(per_round, "subject")
    baseline_m = _collect(per_round, "baseline")
    ratios = _collect(per_round, "ratio")
    targets = []
    for t in comp.targets:
        measured = subject_m.get(t.metric) if t.absolute else ratios.get(t.metric)
        targets.append({**t.__dict__, "text": t.text(), "measured": measured,
                        "met": t.met(measured)})
    return Outcome(comp.name, comp.group, comp.description, comp.subject_label,
                   comp.baseline_label, per_round, subject_m, baseline_m, ratios, targets,
                   time.perf_counter() - started, comp.note)


def _collect(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    names: list[str] = []
    for row in rows:
        for m in row.get(key, {}):
            if m not in names:
                names.append(m)
    return {m: _median([row[key][m] for row in rows if m in row.get(key, {})]) for m in names}


def _round_text(row: dict[str, Any]) -> str:
    parts = []
    for m, v in row["subject"].items():
        text = f"{m}={_fmt(v)}"
        if "baseline" in row and m in row["baseline"]:
            text += f" vs {_fmt(row['baseline'][m])} ({row['ratio'][m]:.2f}×)"
        parts.append(text)
    return ", ".join(parts)


def _fmt(v: float) -> str:
    if v != v:  # nan
        return "nan"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


# -- measuring helpers ----------------------------------------------------------------------
def timed_loop(op: Callable[[int], None], seconds: float, chunk: int = 200) -> Sample:
    """Run ``op(i)`` for about ``seconds``; throughput only (for operations of microseconds,
    where timing each one would cost as much as the operation)."""
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for i in range(n, n + chunk):
            op(i)
        n += chunk
        now = time.perf_counter()
        if now >= deadline:
            break
    return Sample({"ops_per_s": n / (now - start)}, {"ops": n})


def timed_ops(op: Callable[[int], None], seconds: float, start_index: int = 0,
              min_ops: int = 5) -> Sample:
    """Run ``op(i)`` for about ``seconds``, timing each call: throughput and p99 latency."""
    lat: list[float] = []
    i = start_index
    pc = time.perf_counter
    start = pc()
    deadline = start + seconds
    now = start
    while now < deadline or len(lat) < min_ops:
        t0 = pc()
        op(i)
        now = pc()
        lat.append(now - t0)
        i += 1
    return Sample({"ops_per_s": len(lat) / (now - start), "p99_ms": p99_ms(lat)},
                  {"ops": len(lat)})


def threaded_ops(op: Callable[[int, int], None], threads: int, seconds: float) -> Sample:
    """``threads`` threads each run ``op(thread, i)`` until the deadline; total throughput and
    p99 latency of single operations."""
    import threading

    barrier = threading.Barrier(threads + 1)
    lats: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    stop_at = [0.0]

    def worker(t: int) -> None:
        mine = lats[t]
        pc = time.perf_counter
        barrier.wait()
        i = 0
        try:
            while True:
                t0 = pc()
                op(t, i)
                t1 = pc()
                mine.append(t1 - t0)
                i += 1
                if t1 >= stop_at[0]:
                    return
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    start = time.perf_counter()
    stop_at[0] = start + seconds
    barrier.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    all_lat = [x for lst in lats for x in lst]
    return Sample({"ops_per_s": len(all_lat) / elapsed, "p99_ms": p99_ms(all_lat)},
                  {"ops": len(all_lat), "threads": threads})


def p99_ms(latencies_s: list[float]) -> float:
    if not latencies_s:
        return float("nan")
    ordered = sorted(latencies_s)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000.0


def value_of(size: int, i: int) -> bytes:
    """A deterministic, not very compressible value of ``size`` bytes."""
    seed = f"{i:012d}".encode()
    return (seed * (size // len(seed) + 1))[:size]


def key_of(i: int) -> bytes:
    return b"bench/%012d" % i


class Tmp:
    """Directories under the run's work directory, removed at the end of the run."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._n = 0

    def new(self, name: str) -> str:
        self._n += 1
        path = os.path.join(self.root, f"{self._n:03d}-{name}")
        os.makedirs(path, exist_ok=True)
        return path


def iter_chunks(n: int, size: int) -> Iterator[range]:
    for lo in range(0, n, size):
        yield range(lo, min(n, lo + size))
