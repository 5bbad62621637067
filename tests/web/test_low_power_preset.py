"""The low-power preset (AUTOBYTEUS_PRESET=low-power) and the Termux-like constraint of no hard
links: fast, in-process."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import pytest

from domains.channel.outbox import OutboxWorker
from engine import open_store
from engine.indexes import TtlSweeper
from web.app import Runtime
from web.settings import PRESETS, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
LOW = {"AUTOBYTEUS_PRESET": "low-power"}


def test_default_settings_are_unchanged_without_a_preset() -> None:
    s = Settings.from_env({})
    assert (s.preset, s.threads, s.lmdb_map_size, s.ttl_sweep_interval_s,
            s.outbox_poll_interval_s) == ("default", 8, None, 60.0, 1.0)
    assert "map_size" not in s.store_options()


def test_low_power_preset_gives_small_defaults() -> None:
    s = Settings.from_env(LOW)
    assert s.preset == "low-power"
    assert s.threads == 2
    assert s.lmdb_map_size == 8 << 20
    assert s.ttl_sweep_interval_s == 600.0
    assert s.outbox_poll_interval_s == 30.0
    assert s.store_options()["map_size"] == 8 << 20
    assert s.domain_options()["outbox_poll_interval_s"] == 30.0
    # only defaults: everything else is the same as without the preset
    assert s.provider == "lmdb" and s.port == 8000 and s.max_body_bytes == 1 << 20
    # the name is case-insensitive and surrounding blanks are ignored
    assert Settings.from_env({"AUTOBYTEUS_PRESET": " Low-Power "}).preset == "low-power"


def test_explicit_variables_and_flags_win_over_the_preset() -> None:
    env = {**LOW, "AUTOBYTEUS_THREADS": "6", "AUTOBYTEUS_LMDB_MAP_SIZE": str(2 << 20),
           "AUTOBYTEUS_TTL_SWEEP_INTERVAL_SECONDS": "5",
           "AUTOBYTEUS_OUTBOX_POLL_INTERVAL_SECONDS": "3"}
    s = Settings.from_env(env)
    assert (s.threads, s.lmdb_map_size, s.ttl_sweep_interval_s, s.outbox_poll_interval_s) == \
        (6, 2 << 20, 5.0, 3.0)
    assert Settings.from_env(env, threads=1).threads == 1
    assert Settings.from_env(LOW, threads=4).threads == 4
    # the map size applies to lmdb only
    assert "map_size" not in Settings.from_env({**LOW, "PERSISTENCE_PROVIDER": "file"}
                                               ).store_options()


def test_unknown_preset_and_bad_outbox_interval_fail_with_the_variable_named() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"AUTOBYTEUS_PRESET": "turbo"})
    message = str(info.value)
    assert "AUTOBYTEUS_PRESET" in message and "low-power" in message and "default" in message
    with pytest.raises(SettingsError, match="AUTOBYTEUS_OUTBOX_POLL_INTERVAL_SECONDS"):
        Settings.from_env({"AUTOBYTEUS_OUTBOX_POLL_INTERVAL_SECONDS": "0"})
    assert set(PRESETS) == {"default", "low-power"}


def test_the_workers_get_the_relaxed_intervals(tmp_path: Path) -> None:
    s = Settings.from_env({**LOW, "CHANNEL_CALLBACK_BASE_URL": "http://127.0.0.1:9",
                           "AUTOBYTEUS_DATA_DIR": str(tmp_path)})
    runtime = Runtime.start(s)  # the composition root, as the server starts
    try:
        assert runtime.store.stats()["map_size"] == 8 << 20
        workers = runtime.workers
        sweepers = [w for w in workers if isinstance(w, TtlSweeper)]
        outboxes = [w for w in workers if isinstance(w, OutboxWorker)]
        assert [w.interval for w in sweepers] == [600.0]
        assert [w.poll_interval for w in outboxes] == [30.0]
    finally:
        runtime.stop()


def test_the_small_lmdb_map_of_the_preset_grows_by_itself(tmp_path: Path) -> None:
    s = Settings.from_env(LOW)
    store: Any = open_store("lmdb", data_dir=str(tmp_path), map_size=s.lmdb_map_size)
    try:
        before = store.stats()["map_size"]
        assert before == 8 << 20
        chunk = os.urandom(256 << 10)
        for batch in range(6):  # 24 MiB of incompressible values: three times the first map
            with store.begin(write=True) as txn:
                for i in range(16):
                    txn.put(b"blob/%d/%d" % (batch, i), chunk)
        after = store.stats()["map_size"]
        assert after > 3 * before, (before, after)
        with store.begin() as txn:
            assert txn.get(b"blob/5/15") == chunk
    finally:
        store.close()


# -- Termux-like: Android forbids hard links in app storage -------------------------------------
def _python_sources() -> list[Path]:
    found = []
    for package in ("engine", "domains", "web", "tools"):
        found += sorted((ROOT / package).rglob("*.py"))
    assert found
    return found


def test_the_code_never_makes_hard_links() -> None:
    offenders = []
    for path in _python_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute) and node.attr in ("link", "linkat",
                                                                  "hardlink_to", "link_to"):
                name = node.attr
            elif isinstance(node, ast.ImportFrom) and node.module in ("os", "pathlib"):
                name = next((a.name for a in node.names if a.name == "link"), None)
            if name:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert offenders == []


@pytest.mark.parametrize("provider", ["lmdb", "file"])
def test_stores_work_where_hard_links_are_refused(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(1, "Operation not permitted (hard links are refused here)")

    monkeypatch.setattr(os, "link", refused)
    monkeypatch.setattr(Path, "hardlink_to", refused)
    # The file backend compacts (snapshot via temp file + os.replace) at every chance here.
    options: dict[str, Any] = {"compact_min_bytes": 1} if provider == "file" else {}
    for round_ in range(2):
        store = open_store(provider, data_dir=str(tmp_path), **options)
        try:
            for i in range(20):
                with store.begin(write=True) as txn:
                    txn.put(b"k%d/%d" % (round_, i), b"v" * 100)
        finally:
            store.close()
    store = open_store(provider, data_dir=str(tmp_path))
    try:
        with store.begin() as txn:
            assert len(list(txn.scan())) == 40
    finally:
        store.close()
