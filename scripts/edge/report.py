#!/usr/bin/env python3
"""Markdown tables from the JSON lines run.sh leaves in $AUTOBYTEUS_EDGE_DIR/results/.

    python3 scripts/edge/report.py [RESULTS_DIR]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mib(kb: Any) -> str:
    return f"{kb / 1024:.1f}" if isinstance(kb, (int, float)) else "-"


def runs_table(rows: list[dict[str, Any]]) -> str:
    out = ["| run | ok | threads | startup s | private MiB (start / after load) | peak RSS MiB "
           "| req/s /health | req/s read | bare Falcon req/s | relative req/s (health / read) "
           "| relative req per CPU-s (health / read) | cgroup peak MiB |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        start = r.get("mem_after_startup") or {}
        after = r.get("mem_after_load") or {}
        bare = (r.get("bare") or {}).get("load") or {}
        rel = r.get("relative_rps") or {}
        relcpu = r.get("relative_cpu") or {}
        cg = (r.get("cgroup") or {}).get("memory.max_usage_in_bytes")
        out.append("| {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r.get("label") or "?", "yes" if r.get("ok") else "**no**", r.get("threads", "-"),
            r.get("startup_s", "-"), mib(start.get("private_kb")), mib(after.get("private_kb")),
            mib(after.get("VmHWM") or start.get("VmHWM")),
            (r.get("load_health") or {}).get("rps", "-"),
            (r.get("load_read") or {}).get("rps", "-"),
            bare.get("rps", "-"),
            f"{rel['health_vs_bare']:.2f} / {rel['read_vs_bare']:.2f}" if rel else "-",
            f"{relcpu['health_vs_bare']:.2f} / {relcpu['read_vs_bare']:.2f}" if relcpu else "-",
            f"{cg / 2**20:.0f}" if cg else "-"))
        if not r.get("ok") and r.get("error"):
            out.append(f"|  | error: {r['error'][:200]} | | | | | | | | | | |")
    return "\n".join(out)


def growth_table(rows: list[dict[str, Any]]) -> str:
    out = ["| run | map before | map after | used after | written | restart reads back |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        if "growth" not in r:
            continue
        b, a, g = r.get("map_before") or {}, r.get("map_after") or {}, r["growth"]
        row = "| {} | {} MiB | {} MiB | {:.1f} MiB | {} MB in {} requests ({} s) | {} |"
        out.append(row.format(
            r["label"], (b.get("map_size") or 0) >> 20, (a.get("map_size") or 0) >> 20,
            (a.get("map_used_bytes") or 0) / 2**20, g["written_mb"], g["requests"],
            g["seconds"], "yes" if g.get("read_back_after_restart") else "no"))
    return "\n".join(out)


def main() -> int:
    results = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "AUTOBYTEUS_EDGE_DIR", "/var/tmp/autobyteus-edge")) / ("" if len(sys.argv) > 1
                                                               else "results")
    for name in ("no-sql-arm64.json", "no-sql-armhf.json", "no-sql-native.json"):
        for r in lines(results / name):
            print(f"- {name}: machine {r['machine']}, Python {r['python']}, "
                  f"{r['pointer_bits']}-bit, lmdb {r['lmdb']}, falcon {r['falcon']}, "
                  f"SQL libraries absent: {all(r['sql_absent'].values())}, "
                  f"imported: {r['sql_imported'] or 'none'}")
    print()
    for name in ("emulated-arm64.jsonl", "emulated-armhf.jsonl", "memory-native.jsonl"):
        rows = lines(results / name)
        if rows:
            print(f"### {name}\n\n{runs_table(rows)}\n")
            if any("growth" in r for r in rows):
                print(growth_table(rows) + "\n")
    for r in lines(results / "memory-emulated.jsonl"):
        p = r.get("probe") or {}
        print(f"- {r['label']}: RLIMIT_AS seen {p.get('rlimit_as_seen')}, "
              f"1 GiB mapping under a 512 MB limit: {p.get('mmap_1GiB_under_limit')}")
    print()
    rows = lines(results / "termux.jsonl")
    if rows:
        print("### termux.jsonl\n\n| check | ok | detail |\n|---|---|---|")
        for r in rows:
            detail = r["detail"].replace("|", "/").replace("\n", " ")[:300]
            print(f"| {r['check']} | {'yes' if r['ok'] else '**no**'} | {detail} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
