"""The benchmark harness works end to end in a tiny configuration (no timing is asserted: the
numbers of a run this short mean nothing; ``python -m tools.bench`` is the real thing)."""

from __future__ import annotations

import json
from pathlib import Path

from tools.bench import pngchart
from tools.bench.runner import main


def test_a_tiny_run_writes_json_markdown_and_a_chart(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main([
        "--quick", "--only", "lmdb_point_read", "--only", "lmdb_write_1",
        "--only", "http_get_prompt", "--only", "http_post_refused",
        "--only", "http_ingress_w2", "--only", "http_post_usage_2v1",
        "--rounds", "2", "--seconds", "0.05",
        "--http-seconds", "0.3", "--load-generator", "python",
        "--out", str(out), "--workdir", str(tmp_path / "work"),
    ])
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    names = [w["name"] for w in result["workloads"]]
    assert names == ["lmdb_point_read", "lmdb_write_1", "http_get_prompt", "http_post_refused",
                     "http_ingress_w2", "http_post_usage_2v1"]
    for w in result["workloads"]:
        assert w["error"] is None
        assert len(w["rounds"]) == 2
        assert w["ratios"]["ops_per_s"] > 0
        assert all(t["measured"] is not None for t in w["targets"])
    assert result["machine"]["nproc"] >= 1
    table = (out / "results.md").read_text()
    assert "| `lmdb_point_read`" in table and "median ratio" in table
    assert (out / "chart.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_built_in_png_renderer(tmp_path: Path) -> None:
    rows = [{"subject": {"ops_per_s": 10.0, "p99_ms": 2.0},
             "baseline": {"ops_per_s": 20.0, "p99_ms": 1.0}},
            {"subject": {"ops_per_s": 5.0}, "baseline": {"ops_per_s": 4.0}}]
    path = tmp_path / "chart.png"
    pngchart.draw(rows, str(path))
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")


def test_both_http_sides_run_the_servers_default_thread_count() -> None:
    from tools.bench.core import Config
    from tools.bench.runner import parse_args
    from web.settings import Settings

    default = Settings.from_env({}).threads
    assert Config().http_threads == default
    assert Config.make(True).http_threads == default
    assert Config.make(True, http_threads=parse_args(["--http-threads", "3"]).http_threads) \
        .http_threads == 3
    assert Config.make(True, http_threads=parse_args([]).http_threads).http_threads == default


def test_the_platform_probe_measures_what_it_names() -> None:
    from tools.bench import platform_probe

    result = platform_probe.run(0.02)
    ops = [r["operation"] for r in result["lmdb_gil"]]
    assert ops == ["get (read txn)", "put (write txn)", "putmulti, per item",
                   "getmulti, per item"]
    for r in result["lmdb_gil"]:
        assert r["alone_per_s"] > 0 and r["with_a_python_thread_per_s"] > 0
    assert result["hand_over"][0]["round_trips_per_s"] > 0
    assert [r["unit"] for r in result["after_sleep"]][0] == "back to back"
    assert all(r["cpu_us_per_unit"] >= 0 for r in result["after_sleep"])
    table = platform_probe.markdown(result)
    assert "| get (read txn) |" in table and "round trips /s" in table
