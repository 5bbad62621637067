"""The limit settings (environment -> Settings -> waitress) and the in-flight limiter itself."""

from __future__ import annotations

import threading

import pytest

from web.middleware import InflightLimiter
from web.serving import waitress_options
from web.settings import Settings, SettingsError


def test_defaults_are_deliberate() -> None:
    settings = Settings.from_env({})
    assert settings.inflight_limit == 4 * settings.threads
    options = waitress_options(settings)
    assert options["connection_limit"] == 100
    assert options["backlog"] == 128
    assert options["channel_timeout"] == 30
    # Idle and trickling connections are looked for every 5 s at most (web/serving.py).
    assert options["cleanup_interval"] == 5
    assert options["max_request_header_size"] == 64 << 10
    assert options["max_request_body_size"] == 4 << 20
    assert options["expose_tracebacks"] is False
    assert options["asyncore_use_poll"] is True


def test_the_environment_sets_every_limit() -> None:
    settings = Settings.from_env({
        "AUTOBYTEUS_THREADS": "3", "AUTOBYTEUS_MAX_INFLIGHT": "7",
        "AUTOBYTEUS_CONNECTION_LIMIT": "50", "AUTOBYTEUS_BACKLOG": "64",
        "AUTOBYTEUS_CHANNEL_TIMEOUT_SECONDS": "2", "AUTOBYTEUS_MAX_HEADER_BYTES": "4096",
    })
    assert settings.inflight_limit == 7
    options = waitress_options(settings)
    assert (options["threads"], options["connection_limit"], options["backlog"],
            options["channel_timeout"], options["cleanup_interval"],
            options["max_request_header_size"]) == (3, 50, 64, 2, 1, 4096)
    assert Settings.from_env({"AUTOBYTEUS_THREADS": "3"}).inflight_limit == 12


@pytest.mark.parametrize(("name", "value"), [
    ("AUTOBYTEUS_MAX_INFLIGHT", "0"), ("AUTOBYTEUS_MAX_INFLIGHT", "many"),
    ("AUTOBYTEUS_CONNECTION_LIMIT", "0"), ("AUTOBYTEUS_BACKLOG", "-1"),
    ("AUTOBYTEUS_CHANNEL_TIMEOUT_SECONDS", "0"), ("AUTOBYTEUS_MAX_HEADER_BYTES", "10"),
])
def test_a_bad_limit_stops_startup_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_the_limiter_admits_up_to_its_limit_and_counts_what_it_refuses() -> None:
    limiter = InflightLimiter(2)
    assert limiter.try_enter() and limiter.try_enter()
    assert not limiter.try_enter()
    assert limiter.inflight == 2 and limiter.shed_count == 1
    limiter.leave()
    assert limiter.try_enter()
    for _ in range(5):
        limiter.leave()
    assert limiter.inflight == 0  # never negative
    with pytest.raises(ValueError):
        InflightLimiter(0)


def test_the_limiter_never_admits_more_than_its_limit_under_contention() -> None:
    limiter = InflightLimiter(3)
    peak = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal peak
        for _ in range(2000):
            if limiter.try_enter():
                with lock:
                    peak = max(peak, limiter.inflight)
                limiter.leave()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak <= 3 and limiter.inflight == 0
