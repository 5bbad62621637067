"""Several server processes, one metrics directory (``PROMETHEUS_MULTIPROC_DIR``): a scrape of
any one of them counts the requests of all of them, and a stopped process's in-flight gauge
leaves the sum while its counts stay."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from tests.web.metrics_support import parse, value
from tests.web.server_support import Server


def scrape(server: Server) -> dict:
    with urllib.request.urlopen(server.url + "/metrics", timeout=30) as resp:
        assert resp.status == 200
        return parse(resp.read().decode())


def test_two_processes_are_counted_together(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    first = Server(tmp_path / "a", **env)
    second = Server(tmp_path / "b", **env)
    try:
        for _ in range(3):
            assert first.call("GET", "/health")[0] == 200
        for _ in range(5):
            assert second.call("GET", "/health")[0] == 200
        assert second.call("GET", "/rest/api/prompts/1")[0] == 404
        for server in (first, second):
            samples = scrape(server)
            health = value(samples, "autobyteus_http_requests_total", route="/health",
                           method="GET", status="200")
            assert health == 8, server.url
            assert value(samples, "autobyteus_http_requests_total",
                         route="/rest/api/prompts/{id}", method="GET", status="404") == 1
            assert value(samples, "autobyteus_http_request_duration_seconds_count",
                         route="/health", method="GET") == 8
            # Only the scrape being answered is in flight, in either process.
            assert value(samples, "autobyteus_http_requests_in_flight") == 1
            # The store facts are those of the process asked (each has its own store here).
            assert value(samples, "autobyteus_store_up") == 1
        # One file of values per process and kind of metric.
        assert {p.name.rsplit("_", 1)[-1] for p in shared.iterdir()} >= {
            f"{first.proc.pid}.db", f"{second.proc.pid}.db"}
        assert second.stop() == 0, "".join(second.log)
        samples = scrape(first)
        assert value(samples, "autobyteus_http_requests_total", route="/health", method="GET",
                     status="200") == 8
        assert value(samples, "autobyteus_http_requests_in_flight") == 1
    finally:
        for server in (first, second):
            if server.proc.poll() is None:
                server.stop()
