"""The markdown table and the chart of a run (matplotlib when installed, else a PNG of our own)."""

from __future__ import annotations

import math
from typing import Any


def _num(v: Any, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}{unit}"
    if abs(v) >= 10:
        return f"{v:.1f}{unit}"
    return f"{v:.3g}{unit}"


def _metric(o: dict[str, Any], side: str, metric: str) -> Any:
    return o.get(side, {}).get(metric)


_UNITS = {"ops_per_s": ("", "/s"), "p99_ms": ("p99 ", " ms"), "ms": ("", " ms"),
          "startup_ms": ("start ", " ms"), "private_mb": ("", " MB private")}


def _value_text(o: dict[str, Any], side: str) -> str:
    m = o.get(side) or {}
    parts = []
    for k, v in m.items():
        prefix, unit = _UNITS.get(k, (k + " ", ""))
        parts.append(prefix + _num(v, unit))
    return ", ".join(parts) or "–"


def markdown(result: dict[str, Any]) -> str:
    mach = result["machine"]
    lines = [
        f"Run `{result['command'].strip()}` at {result['started_at']} in {result['seconds']} s "
        f"on {mach['nproc']} × {mach['cpu']}, {mach.get('memory_gib')} GiB, disk "
        f"{mach['disk']}; load average {mach.get('loadavg_start')} at start, "
        f"{mach.get('loadavg_end')} at end; {result['config']['rounds']} interleaved rounds, "
        "medians.",
        "",
        "| workload | ours | baseline | median ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for o in result["workloads"]:
        if o.get("error"):
            lines.append(f"| `{o['name']}` {o['description']} | failed: {o['error']} | | | | |")
            continue
        ratios = ", ".join(
            f"{k} {v:.2f}×" for k, v in o.get("ratios", {}).items()
            if not (isinstance(v, float) and math.isnan(v))
        ) or "–"
        targets = "; ".join(t["text"] for t in o["targets"]) or "(reported)"
        met = " ".join(
            "–" if t["met"] is None else ("yes" if t["met"] else "**no**") for t in o["targets"]
        ) or ""
        baseline = (f"{o['baseline_label']}: {_value_text(o, 'baseline')}"
                    if o.get("baseline_label") else "–")
        lines.append(
            f"| `{o['name']}` {o['description']} | {o['subject_label']}: "
            f"{_value_text(o, 'subject')} | {baseline} | {ratios} | {targets} | {met} |"
        )
    notes = [f"- `{o['name']}`: {o['note']}" for o in result["workloads"] if o.get("note")]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def chart(result: dict[str, Any], path: str) -> str:
    """Write the chart; returns which renderer drew it."""
    rows = [o for o in result["workloads"] if not o.get("error") and o.get("baseline")
            and ("ops_per_s" in o["subject"] or "p99_ms" in o["subject"])]
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        from tools.bench import pngchart

        pngchart.draw(rows, path)
        return "built-in renderer (matplotlib is not installed)"
    _matplotlib_chart(rows, path)
    return "matplotlib"


def _matplotlib_chart(rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib.pyplot as plt

    names = [o["name"] for o in rows]
    n = max(1, len(names))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * n + 1.6), sharey=True)
    y = list(range(n))
    h = 0.38
    for ax, metric, title in ((axes[0], "ops_per_s", "throughput (ops/s, log)"),
                              (axes[1], "p99_ms", "p99 latency (ms, log)")):
        ours = [_metric(o, "subject", metric) for o in rows]
        base = [_metric(o, "baseline", metric) for o in rows]
        if not any(ours):
            continue
        ax.barh([i - h / 2 for i in y], [v or 0 for v in ours], height=h, color="#2b6cb0",
                label="ours")
        ax.barh([i + h / 2 for i in y], [v or 0 for v in base], height=h, color="#b0b0b0",
                label="baseline")
        ax.set_xscale("log")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        for i, (a, b) in enumerate(zip(ours, base, strict=True)):
            ratio = rows[i].get("ratios", {}).get(metric)  # the median of per-round ratios
            if a and b and ratio is not None:
                ax.text(max(a, b) * 1.15, i, f"{ratio:.2f}×", va="center", fontsize=6)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, names, fontsize=7)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("autobyteus persistence: ours vs baseline, medians of interleaved rounds",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
