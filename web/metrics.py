"""``GET /metrics``: the Prometheus text exposition, made by ``prometheus_client``.

Two kinds of figures:

- Per-request ones (requests by route template, method and status; their latency; requests in
  flight; requests shed; TTL keys swept; group-commit batches) are counted where they happen, by
  the library's own metric objects. With ``PROMETHEUS_MULTIPROC_DIR`` set (several server
  processes), the library keeps them in files in that directory, one per process, and a scrape
  of any process sums them all (``MultiProcessCollector``).
- Facts of the store (size, LMDB map, TTL keys live, outbox backlog) are the same whichever
  process is asked, since every process serves the same store: they are read at scrape time by
  ``StoreCollector`` and never summed.

Each app has its own registry, so several apps in one process (the tests) do not collide.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import falcon
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine import Store
from web.errors import ApiError

log = logging.getLogger("web.metrics")

#: The library's switch for several processes (read once, when prometheus_client is imported).
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: The label of requests that matched no route (404): one series, whatever the path was.
UNMATCHED_ROUTE = "(unmatched)"
#: Latency buckets in seconds: from a memoised read (under 1 ms) to a stalled fsync.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
#: Group-commit batch sizes (write transactions per durable flush).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
#: Counting backlog and TTL keys stops here (a scrape must stay cheap on a huge store).
COUNT_CAP = 1_000_000


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_VARIABLE) or os.environ.get(MULTIPROCESS_VARIABLE.lower())


def _shared_files_collector() -> type:
    """prometheus_client's MultiProcessCollector, patient with a file that another worker has
    just created and not yet sized (reading it then fails with struct.error: seen when workers
    start together); it reads the directory again a moment later."""
    import struct

    from prometheus_client import multiprocess

    class SharedFilesCollector(multiprocess.MultiProcessCollector):  # type: ignore[misc]
        def collect(self) -> Any:
            for _ in range(20):
                try:
                    return super().collect()
                except struct.error:
                    time.sleep(0.01)
            return super().collect()

    return SharedFilesCollector


class Metrics:
    """The metric objects of one app, and the registry that ``GET /metrics`` exposes."""

    def __init__(self, store: Store, ttl_spaces: Iterable[Any] = (),
                 backlog: Callable[[Store], dict[str, Any]] | None = None) -> None:
        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry(auto_describe=True)
        if self.multiprocess:
            _shared_files_collector()(self.registry)
            own: CollectorRegistry | None = None  # the values live in the directory's files
        else:
            from prometheus_client import ProcessCollector

            ProcessCollector(registry=self.registry)
            own = self.registry
        self.requests = Counter(
            "autobyteus_http_requests", "HTTP requests answered by the app",
            ["route", "method", "status"], registry=own)
        self.latency = Histogram(
            "autobyteus_http_request_duration_seconds",
            "Time from the request reaching the app to its answer being ready",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=own)
        self._inflight_gauge = Gauge(
            "autobyteus_http_requests_in_flight", "Requests the app is serving now",
            registry=own, multiprocess_mode="livesum")
        # One process: the gauge reads the length of a deque that each request appends to and
        # pops from (both atomic), 0.1 µs a request instead of a locked inc() and dec(), 3 µs.
        # Several: the library's own inc() and dec() keep it in the shared files.
        self._inflight: deque[None] | None = None
        if not self.multiprocess:
            self._inflight = deque()
            self._inflight_gauge.set_function(self._inflight.__len__)
        self.shed = Counter(
            "autobyteus_http_requests_shed",
            "Requests answered 503 OVERLOADED at once because the in-flight limit was reached",
            registry=own)
        self.ttl_swept = Counter(
            "autobyteus_ttl_keys_swept", "Expired TTL (idempotency) keys purged by the sweeper",
            registry=own)
        self.registry.register(StoreCollector(store, list(ttl_spaces), backlog))
        # (route, method, status) -> the counter's child and the histogram's: labels() takes a
        # lock and builds a tuple per call; the children are looked up once per series.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.flushes_observed = self._watch_flushes(store)

    # -- request hooks (web/observe.py) ----------------------------------------------------------
    def observe_request(self, route: str | None, method: str, status: int,
                        seconds: float) -> None:
        key = (route or UNMATCHED_ROUTE, method, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(key[0], method, str(status)),
                        self.latency.labels(key[0], method))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def request_started(self) -> None:
        if self._inflight is not None:
            self._inflight.append(None)
        else:
            self._inflight_gauge.inc()

    def request_finished(self) -> None:
        if self._inflight is not None:
            self._inflight.pop()
        else:
            self._inflight_gauge.dec()

    def count_shed(self) -> None:
        self.shed.inc()

    # -- background work ---------------------------------------------------------------------------
    def watch_sweeper(self, sweeper: Any) -> None:
        """Count what ``sweeper`` (engine.indexes.TtlSweeper) purges, as it purges it."""
        run_once = sweeper.run_once

        def counted_run_once() -> int:
            purged = run_once()
            if purged:
                self.ttl_swept.inc(purged)
            return purged

        sweeper.run_once = counted_run_once

    def _watch_flushes(self, store: Store) -> bool:
        """Observe group commit where the store tells of its flushes: a ``BatchingStore``
        (lmdb, file, sqlite) with a ``flush_listeners`` list, each called after every durable
        flush with (write transactions in the batch, seconds, succeeded). PostgreSQL has no
        batches; a store without the list gets no group-commit series at all (an empty series
        would read as "no flushes")."""
        listeners = getattr(store, "flush_listeners", None)
        if listeners is None:
            return False
        own = None if self.multiprocess else self.registry
        self.batch_size = Histogram(
            "autobyteus_group_commit_batch_size",
            "Write transactions made durable by one group-commit flush",
            buckets=BATCH_BUCKETS, registry=own)
        self.flush_seconds = Histogram(
            "autobyteus_group_commit_flush_seconds", "Duration of one durable group-commit flush",
            buckets=FLUSH_BUCKETS, registry=own)
        self.flush_failures = Counter(
            "autobyteus_group_commit_flush_failures", "Group-commit flushes that failed",
            registry=own)
        listeners.append(self._observe_flush)
        return True

    def _observe_flush(self, members: int, seconds: float, succeeded: bool) -> None:
        self.batch_size.observe(members)
        self.flush_seconds.observe(seconds)
        if not succeeded:
            self.flush_failures.inc()

    def close(self) -> None:
        """This process ends: its live gauges (in flight) leave the sums of a multiprocess
        scrape; its counters stay, as the library keeps the files of dead processes' counts."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class StoreCollector(Collector):
    """Facts read from the store at each scrape: the same from every process that serves it."""

    def __init__(self, store: Store, ttl_spaces: list[Any],
                 backlog: Callable[[Store], dict[str, Any]] | None) -> None:
        self._store = store
        self._ttl_spaces = ttl_spaces
        self._backlog = backlog
        self._started = time.monotonic()
        self._first_map_size: int | None = None

    def describe(self) -> list[Any]:
        return []  # read at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        try:
            yield from self._store_facts()
            yield from self._ttl_facts()
            yield from self._backlog_facts()
        except Exception as exc:  # a scrape must answer even when the store does not
            log.warning("reading store metrics failed: %s: %s", type(exc).__name__, exc)
            up = GaugeMetricFamily("autobyteus_store_up", "1 if the store answered the scrape")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("autobyteus_store_up", "1 if the store answered the scrape")
        up.add_metric([], 1)
        yield up

    def _store_facts(self) -> Iterator[Any]:
        stats = self._store.stats()
        provider = stats.get("provider", self._store.provider)
        size = _store_bytes(stats)
        if size is not None:
            g = GaugeMetricFamily("autobyteus_store_size_bytes",
                                  "Bytes the store takes (LMDB: pages in use)", labels=["provider"])
            g.add_metric([provider], size)
            yield g
        records = stats.get("records", stats.get("keys"))
        if records is not None:
            g = GaugeMetricFamily("autobyteus_store_keys", "Keys in the store",
                                  labels=["provider"])
            g.add_metric([provider], records)
            yield g
        if "map_size" in stats:
            if self._first_map_size is None:
                self._first_map_size = stats["map_size"]
            for name, doc, value in (
                ("autobyteus_lmdb_map_size_bytes",
                 "Size of the LMDB map now (it grows by itself when full)", stats["map_size"]),
                ("autobyteus_lmdb_map_used_bytes", "Bytes of the LMDB map in use",
                 stats["map_used_bytes"]),
                ("autobyteus_lmdb_map_use_ratio", "Part of the LMDB map in use (0..1)",
                 stats["map_use"]),
                ("autobyteus_lmdb_map_growth_bytes",
                 "How much the LMDB map grew since this process first looked",
                 stats["map_size"] - self._first_map_size),
                ("autobyteus_lmdb_readers_used", "LMDB reader slots in use",
                 stats["readers"]["slots_used"]),
            ):
                g = GaugeMetricFamily(name, doc)
                g.add_metric([], value)
                yield g

    def _ttl_facts(self) -> Iterator[Any]:
        if not self._ttl_spaces:
            return
        live = GaugeMetricFamily(
            "autobyteus_ttl_keys_live", "TTL (idempotency) keys not yet expired", labels=["space"])
        expired = GaugeMetricFamily(
            "autobyteus_ttl_keys_expired", "TTL keys expired but not yet swept", labels=["space"])
        now_us = int(time.time() * 1_000_000)
        with self._store.begin() as txn:
            for space in self._ttl_spaces:
                n_live, n_expired = count_ttl_keys(txn, space, now_us)
                live.add_metric([space.name], n_live)
                expired.add_metric([space.name], n_expired)
        yield live
        yield expired

    def _backlog_facts(self) -> Iterator[Any]:
        if self._backlog is None:
            return
        facts = self._backlog(self._store)
        depth = GaugeMetricFamily("autobyteus_outbox_entries",
                                  "Reply outbox entries by state (SENT entries are not counted)",
                                  labels=["state"])
        for state, count in facts["depth"].items():
            depth.add_metric([state], count)
        yield depth
        age = GaugeMetricFamily("autobyteus_outbox_oldest_pending_age_seconds",
                                "Age of the oldest reply not yet delivered (0: none waits)")
        age.add_metric([], facts["oldest_pending_age_s"])
        yield age


def _store_bytes(stats: dict[str, Any]) -> int | None:
    if "map_used_bytes" in stats:  # lmdb
        return int(stats["map_used_bytes"])
    if "journal_bytes" in stats:  # file: what a restart reads
        return int(stats.get("snapshot_bytes", 0) or 0) + int(stats["journal_bytes"])
    if stats.get("bytes") is not None:  # sqlite files, postgresql relation
        return int(stats["bytes"])
    return None


def count_ttl_keys(txn: Any, space: Any, now_us: int) -> tuple[int, int]:
    """(live, expired) keys of a TTL space (engine.indexes.TtlSpace): every key under its prefix
    is a TTL key or an entry of its expiry index, which holds one entry per expiring key, ordered
    by expiry (the microseconds, packed as the first element after ``expiry_prefix``)."""
    from engine.keys import pack

    total = sum(1 for _ in txn.scan(prefix=space.prefix, limit=COUNT_CAP))
    expiry_entries = sum(1 for _ in txn.scan(prefix=space.expiry_prefix, limit=COUNT_CAP))
    expired_end = space.expiry_prefix + pack((now_us + 1,))
    expired = sum(1 for _ in txn.scan(space.expiry_prefix, expired_end, limit=COUNT_CAP))
    keys = total - expiry_entries
    return max(keys - expired, 0), expired


def metrics_for(store: Store, services: Any) -> Metrics:
    """The metrics of an app over ``services`` (domains.registry.Services)."""
    backlog = None
    if getattr(services, "channel", None) is not None:
        from domains.channel.backlog import outbox_backlog

        backlog = outbox_backlog
    return Metrics(store, getattr(services, "ttl_spaces", ()), backlog)


def watch_workers(metrics: Metrics, workers: Iterable[Any]) -> None:
    """Count the work of the server's background workers (the TTL sweeper's purges)."""
    from engine.indexes import TtlSweeper

    for worker in workers:
        if isinstance(worker, TtlSweeper):
            metrics.watch_sweeper(worker)


# -- the route --------------------------------------------------------------------------------
class MetricsResource:
    """``GET /metrics``: behind the API token when one is set, unless made public."""

    def __init__(self, metrics: Metrics, token: str | None) -> None:
        self._metrics = metrics
        self._expected = f"Bearer {token}".encode() if token else None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._expected is not None:
            given = (req.get_header("Authorization") or "").encode()
            if not hmac.compare_digest(given, self._expected):
                raise ApiError(
                    falcon.HTTP_401, "UNAUTHORIZED", "a valid bearer token is required",
                    headers={"WWW-Authenticate": 'Bearer realm="autobyteus"'})
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = self._metrics.exposition()


PATHS: dict[str, Any] = {
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text exposition format)",
            "description": "Needs the bearer token when one is configured, unless "
                           "AUTOBYTEUS_METRICS_PUBLIC=1.",
            "operationId": "metrics",
            "security": [{"bearer": []}, {}],
            "responses": {
                "200": {"description": "the metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}}},
                "401": {"$ref": "#/components/responses/Error"},
            },
        }
    },
}
