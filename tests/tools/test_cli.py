"""The commands as installed and as modules: entry points, python -m, help, progress."""

from __future__ import annotations

import configparser
import importlib
import subprocess
import sys
from pathlib import Path

from tests.tools.helpers import contents, fill, flags, tool

ROOT = Path(__file__).resolve().parents[2]


def test_console_scripts_point_at_mains():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    scripts = dict(
        line.split(" = ") for line in cfg["options.entry_points"]["console_scripts"].split("\n")
        if line.strip()
    )
    assert scripts["autobyteus-server"] == "web.server:main"
    for name in ("autobyteus-store", "autobyteus-dump"):
        module, _, func = scripts[name].partition(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_modules_run(make_store, tmp_path):
    loc = make_store.location("file")
    store = make_store.open("file", loc)
    fill(store, n=3)
    store.close()
    dump = subprocess.run([sys.executable, "-m", "tools.dump", *flags("file", loc), "--all"],
                          cwd=ROOT, capture_output=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    assert dump.stdout.startswith(b'{"format":"autobyteus-dump"') and b"dump:" in dump.stderr
    tloc = make_store.location("sqlite")
    load = subprocess.run([sys.executable, "-m", "tools", "load", "-", *flags("sqlite", tloc),
                           "--progress"], cwd=ROOT, input=dump.stdout, capture_output=True,
                          timeout=60)
    assert load.returncode == 0, load.stderr
    assert b"load: " in load.stderr and b"Traceback" not in load.stderr
    assert contents("sqlite", tloc) == contents("file", loc)
    bad = subprocess.run([sys.executable, "-m", "tools", "load", "-", *flags("sqlite", tloc),
                          "--force"], cwd=ROOT, input=dump.stdout[:-10], capture_output=True,
                         timeout=60)
    assert bad.returncode == 5 and b"Traceback" not in bad.stderr
    assert contents("sqlite", tloc) == contents("file", loc)  # untouched, despite --force


def test_usage_errors(make_store, tmp_path, capsys):
    loc = make_store.location("lmdb")
    make_store.open("lmdb", loc).close()
    assert tool("dump", "-o", str(tmp_path / "no" / "such" / "dir.jsonl"), *flags("lmdb", loc)) == 2
    try:
        tool("frobnicate")
    except SystemExit as exc:
        assert exc.code == 2
    try:
        tool("load", "x", "--batch-size", "0")
    except SystemExit as exc:
        assert exc.code == 2
    assert "Traceback" not in capsys.readouterr().err
