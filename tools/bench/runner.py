"""The command line: choose workloads, run them, write results.json, results.md and chart.png."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Any

from tools.bench import report
from tools.bench.core import Comparison, Config, Outcome, Tmp, run_comparison

GROUPS = ("engine", "http", "scale", "edge")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description="Benchmarks against the raw libraries and a bare server: each workload and "
                    "its baseline interleaved in the same run, reported as median ratios.",
    )
    p.add_argument("--quick", action="store_true",
                   help="smaller sizes, fewer and shorter rounds (a few minutes)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only these workloads: a name, a group (engine, http, scale, edge) "
                        "or a glob such as 'lmdb_*'; repeatable")
    p.add_argument("--out", default="bench-results", metavar="DIR",
                   help="where results.json, results.md and chart.png go (default bench-results)")
    p.add_argument("--rounds", type=int, help="rounds per workload (default 5, quick 3)")
    p.add_argument("--seconds", type=float, help="seconds per engine measurement")
    p.add_argument("--http-seconds", type=float, help="seconds per HTTP load run")
    p.add_argument("--http-threads", type=int,
                   help="waitress threads of both HTTP servers (default: the server's default)")
    p.add_argument("--scale-large", type=int, help="records of the large store (scale group)")
    p.add_argument("--load-generator", choices=("auto", "wrk", "python"), default="auto",
                   help="HTTP load generator (auto: wrk when installed)")
    p.add_argument("--workdir", help="where stores are created (default: a temporary directory)")
    p.add_argument("--server-env", action="append", default=[], metavar="VAR=VALUE",
                   help="a setting for every server the bench starts, e.g. "
                        "AUTOBYTEUS_ACCESS_LOG=0; repeatable")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    return p.parse_args(argv)


def all_comparisons(cfg: Config, tmp: Tmp) -> list[Comparison]:
    from tools.bench import edge_bench, engine_bench, http_bench, pg_bench, scale_bench

    return [
        *engine_bench.comparisons(cfg, tmp),
        *pg_bench.comparisons(cfg, tmp),
        *http_bench.comparisons(cfg, tmp),
        *scale_bench.comparisons(cfg, tmp),
        *edge_bench.comparisons(cfg, tmp),
    ]


def select(comps: list[Comparison], only: list[str] | None) -> list[Comparison]:
    if not only:
        return comps
    chosen = []
    for c in comps:
        for pattern in only:
            if pattern == c.group or fnmatch.fnmatchcase(c.name, pattern):
                chosen.append(c)
                break
    return chosen


def machine_info(workdir: str) -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1048576, 1) if mem_kb else None,
        "disk": disk_info(workdir),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": _loadavg(),
    }


def disk_info(path: str) -> str:
    """The device under ``path`` and whether it is rotational, as far as /sys tells."""
    try:
        dev = os.stat(path).st_dev
        major, minor = os.major(dev), os.minor(dev)
        base = f"/sys/dev/block/{major}:{minor}"
        real = os.path.realpath(base)
        name = os.path.basename(real)
        parent = os.path.dirname(real)
        queue = os.path.join(real, "queue")
        if not os.path.isdir(queue):
            queue = os.path.join(parent, "queue")
        rot = open(os.path.join(queue, "rotational")).read().strip()
        kind = "rotational" if rot == "1" else "non-rotational (SSD/virtual)"
        fs = _fs_type(path)
        return f"/dev/{name} ({kind}{', ' + fs if fs else ''})"
    except OSError:
        return "unknown"


def _fs_type(path: str) -> str:
    best, fs = "", ""
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1]
                if os.path.abspath(path).startswith(mnt) and len(mnt) > len(best):
                    best, fs = mnt, parts[2]
    except OSError:
        pass
    return fs


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tools.bench import http_bench

    for item in args.server_env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"bench: --server-env wants VAR=VALUE, not {item!r}", file=sys.stderr)
            return 2
        http_bench.SERVER_SETTINGS[name] = value
    cfg = Config.make(
        args.quick, rounds=args.rounds, engine_seconds=args.seconds,
        http_seconds=args.http_seconds, http_threads=args.http_threads,
        scale_large=args.scale_large,
        load_generator=args.load_generator,
    )
    own_workdir = args.workdir is None
    workdir = args.workdir or tempfile.mkdtemp(prefix="autobyteus-bench-")
    os.makedirs(workdir, exist_ok=True)
    cfg.workdir = workdir
    tmp = Tmp(workdir)
    comps = select(all_comparisons(cfg, tmp), args.only)
    if args.list:
        for c in all_comparisons(cfg, tmp):
            print(f"{c.group:7} {c.name:24} {c.description}")
        return 0
    if not comps:
        print(f"tools.bench: no workload matches {args.only}", file=sys.stderr)
        return 2

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    info = machine_info(workdir)
    started = time.time()
    log(f"bench: {len(comps)} workloads, {cfg.rounds} rounds, quick={cfg.quick}, "
        f"workdir {workdir}, load {info['loadavg_start']}")
    outcomes: list[Outcome] = []
    try:
        for comp in comps:
            log(f"{comp.name}: {comp.description} ({comp.subject_label} vs "
                f"{comp.baseline_label or 'target'})")
            outcomes.append(run_comparison(comp, cfg.rounds, log))
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_end"] = _loadavg()
    result = {
        "command": "python -m tools.bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": info,
        "config": {k: v for k, v in cfg.__dict__.items() if k != "workdir"},
        "workloads": [o.as_json() for o in outcomes],
    }
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "results.json")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1, default=str)
    md = report.markdown(result)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    chart = os.path.join(args.out, "chart.png")
    renderer = report.chart(result, chart)
    log(f"\n{md}")
    log(f"wrote {json_path}, results.md and chart.png ({renderer}) in {args.out} "
        f"after {result['seconds']} s")
    missed = [t for o in outcomes for t in o.targets if t["met"] is False]
    failed = [o.name for o in outcomes if o.error]
    if failed:
        log(f"workloads that failed: {', '.join(failed)}")
        return 1
    del missed  # a missed target is a finding, not a failure of the run
    return 0
