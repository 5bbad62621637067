"""What the server does once started, before it serves: start-up objects leave the collector's
sight (gc.freeze), with the thread count of the settings."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

import pytest

from web import server, serving
from web.settings import Settings


def test_the_default_thread_count_and_the_low_power_one() -> None:
    # Measured (README "Performance"): 16 threads gave the durable POSTs nothing with pipelined
    # group commit, and cost the GET about a tenth; the low-power preset stays small.
    assert Settings.from_env({}).threads == 8
    assert Settings.from_env({"AUTOBYTEUS_PRESET": "low-power"}).threads == 2


def test_startup_objects_are_frozen_before_the_server_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    class Server:
        def run(self) -> None:
            seen["frozen"] = gc.get_freeze_count()

        def close(self) -> None:
            pass

    def create_server(app: Any, settings: Settings, sockets: Any = None) -> Server:
        seen["threads"] = settings.threads
        seen["frozen_before"] = gc.get_freeze_count()
        return Server()

    monkeypatch.setattr(serving, "create_server", create_server)
    monkeypatch.setattr(serving, "listening_address", lambda server: ("127.0.0.1", 1))
    monkeypatch.setattr(server.signal, "signal", lambda *args: None)
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    for name in ("AUTOBYTEUS_PRESET", "AUTOBYTEUS_THREADS", "PERSISTENCE_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTOBYTEUS_DATA_DIR", str(tmp_path))
    gc.unfreeze()
    try:
        assert server.main(["--port", "0"]) == 0
    finally:
        gc.unfreeze()
    assert seen["frozen_before"] == 0
    assert seen["frozen"] > 1000  # the modules, the app, the store: all of start-up
    assert seen["threads"] == 8
