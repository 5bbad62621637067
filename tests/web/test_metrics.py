"""GET /metrics in process: request series by route template, the token rule, the store's facts
(size, LMDB map), TTL keys live / expired / swept, the outbox backlog, and shed requests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import falcon.testing
import pytest

from domains.channel.backlog import outbox_backlog
from engine.indexes import TtlSweeper
from tests.domains.channel_support import ENVELOPE, ROUTE
from tests.web.api_support import ManualClock, assert_error
from tests.web.metrics_support import parse, value
from web.app import create_app
from web.metrics import metrics_for, watch_workers
from web.middleware import InflightLimiter
from web.settings import Settings

TOKEN = "metrics-token"
INGRESS = "/rest/api/channel-ingress/v1/messages"


def scrape(client: falcon.testing.TestClient, **headers: str) -> dict[Any, float]:
    result = client.simulate_get("/metrics", headers=headers)
    assert result.status_code == 200, result.text
    assert result.headers["content-type"].startswith("text/plain")
    return parse(result.text)


def test_requests_are_counted_by_route_template_method_and_status(
        make_client: Callable[..., falcon.testing.TestClient]) -> None:
    client = make_client()
    created = client.simulate_post("/rest/api/prompts", json={
        "name": "p", "category": "c", "promptContent": "x"})
    assert created.status_code == 201, created.text
    pid = created.json["id"]
    for _ in range(3):
        assert client.simulate_get(f"/rest/api/prompts/{pid}").status_code == 200
    assert client.simulate_get("/rest/api/prompts/999999").status_code == 404
    assert client.simulate_get("/no/such/path").status_code == 404
    samples = scrape(client)

    template = "/rest/api/prompts/{id}"
    total = "autobyteus_http_requests_total"
    assert value(samples, total, route=template, method="GET", status="200") == 3
    assert value(samples, total, route=template, method="GET", status="404") == 1
    assert value(samples, total, route="/rest/api/prompts", method="POST", status="201") == 1
    assert value(samples, total, route="(unmatched)", method="GET", status="404") == 1
    # The ids of the paths never become labels: one series per template.
    assert not any(pid in dict(labels).get("route", "") for _, labels in samples)
    # The latency histogram has every request of the template in its count and +Inf bucket.
    count = "autobyteus_http_request_duration_seconds_count"
    assert value(samples, count, route=template, method="GET") == 4
    assert value(samples, "autobyteus_http_request_duration_seconds_bucket",
                 route=template, method="GET", le="+Inf") == 4
    assert value(samples, "autobyteus_http_request_duration_seconds_sum",
                 route=template, method="GET") > 0
    # The scrape itself is being served while it is collected: one request in flight.
    assert value(samples, "autobyteus_http_requests_in_flight") == 1
    assert value(samples, "process_resident_memory_bytes") > 0


def test_metrics_need_the_token_when_one_is_set(
        make_client: Callable[..., falcon.testing.TestClient]) -> None:
    client = make_client(api_token=TOKEN)
    assert_error(client.simulate_get("/metrics"), 401, "UNAUTHORIZED")
    assert_error(client.simulate_get("/metrics", headers={"Authorization": "Bearer nope"}),
                 401, "UNAUTHORIZED")
    samples = scrape(client, Authorization=f"Bearer {TOKEN}")
    assert value(samples, "autobyteus_http_requests_total", route="/metrics", method="GET",
                 status="401") == 2

    public = make_client(api_token=TOKEN, metrics_public=True)
    scrape(public)
    # The API itself still needs it.
    assert_error(public.simulate_get("/rest/api/prompts"), 401, "UNAUTHORIZED")
    assert make_client().simulate_get("/metrics").status_code == 200  # no token: open


def test_the_document_describes_metrics_and_docs(client: falcon.testing.TestClient) -> None:
    paths = client.simulate_get("/openapi.json").json["paths"]
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert "text/html" in paths["/docs"]["get"]["responses"]["200"]["content"]


@pytest.mark.parametrize("provider", ["lmdb", "file", "sqlite"])
def test_store_facts(make_client: Callable[..., falcon.testing.TestClient],
                     provider: str) -> None:
    client = make_client(provider)
    before = scrape(client)
    size_before = value(before, "autobyteus_store_size_bytes", provider=provider)
    assert size_before is not None and size_before > 0
    assert value(before, "autobyteus_store_up") == 1
    for i in range(30):
        r = client.simulate_post("/rest/api/prompts", json={
            "name": f"p{i}", "category": "c", "promptContent": "x" * 2000})
        assert r.status_code == 201
    after = scrape(client)
    assert value(after, "autobyteus_store_size_bytes", provider=provider) > size_before
    assert value(after, "autobyteus_store_keys", provider=provider) > \
        value(before, "autobyteus_store_keys", provider=provider)
    if provider == "lmdb":
        used = value(after, "autobyteus_lmdb_map_used_bytes")
        size = value(after, "autobyteus_lmdb_map_size_bytes")
        assert 0 < used < size
        assert value(after, "autobyteus_lmdb_map_use_ratio") == pytest.approx(used / size,
                                                                                abs=1e-4)
        assert value(after, "autobyteus_lmdb_map_growth_bytes") == 0
    else:
        assert value(after, "autobyteus_lmdb_map_size_bytes") is None


def test_lmdb_map_growth_is_shown(make_store: Any) -> None:
    store = make_store.open("lmdb", map_size=1 << 20)
    client = falcon.testing.TestClient(create_app(store, Settings(provider="lmdb")))
    first = scrape(client)
    assert value(first, "autobyteus_lmdb_map_size_bytes") == 1 << 20
    for i in range(40):  # 40 x 60 KB: past the 1 MiB map, which grows by itself
        assert client.simulate_post("/rest/api/prompts", json={
            "name": f"p{i}", "category": "c", "promptContent": "y" * 60_000}).status_code == 201
    grown = scrape(client)
    assert value(grown, "autobyteus_lmdb_map_size_bytes") > 1 << 20
    assert value(grown, "autobyteus_lmdb_map_growth_bytes") == \
        value(grown, "autobyteus_lmdb_map_size_bytes") - (1 << 20)


def test_ttl_keys_live_expired_and_swept(make_store: Any) -> None:
    store = make_store.open("lmdb")
    clock = ManualClock()  # February 2026: keys reserved then, for an hour, are expired now
    settings = Settings(provider="lmdb")
    from domains.registry import build_services

    services = build_services(store, settings=settings.domain_options(), clock=clock)
    metrics = metrics_for(store, services)
    client = falcon.testing.TestClient(
        create_app(store, settings, services=services, metrics=metrics))
    # A bound route: an UNBOUND message reserves no idempotency key (a replay after binding
    # must be routed), so only routed messages leave TTL keys.
    assert client.simulate_put("/rest/api/channel-bindings", json={
        **ROUTE, "targetType": "AGENT", "agentId": "agent-1"}).status_code in (200, 201)
    for i in range(3):
        assert client.simulate_post(INGRESS, json={
            **ENVELOPE, "externalMessageId": f"old-{i}"}).status_code == 202
    clock.set(dt.datetime.now(dt.UTC))
    for i in range(2):
        assert client.simulate_post(INGRESS, json={
            **ENVELOPE, "externalMessageId": f"new-{i}"}).status_code == 202
    samples = scrape(client)
    assert value(samples, "autobyteus_ttl_keys_live", space="channel_ingress") == 2
    assert value(samples, "autobyteus_ttl_keys_expired", space="channel_ingress") == 3
    assert value(samples, "autobyteus_ttl_keys_swept_total") == 0

    sweeper = TtlSweeper(store, services.ttl_spaces)
    watch_workers(metrics, [sweeper])
    assert sweeper.run_once() == 3
    samples = scrape(client)
    assert value(samples, "autobyteus_ttl_keys_swept_total") == 3
    assert value(samples, "autobyteus_ttl_keys_live", space="channel_ingress") == 2
    assert value(samples, "autobyteus_ttl_keys_expired", space="channel_ingress") == 0


def test_outbox_backlog_and_oldest_pending_age(make_store: Any) -> None:
    store = make_store.open("lmdb")
    clock = ManualClock(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    client = falcon.testing.TestClient(create_app(
        store, Settings(provider="lmdb", callback_base_url="http://127.0.0.1:9"), clock=clock))
    empty = scrape(client)
    assert value(empty, "autobyteus_outbox_entries", state="PENDING") == 0
    assert value(empty, "autobyteus_outbox_oldest_pending_age_seconds") == 0

    assert client.simulate_put("/rest/api/channel-bindings", json={
        **ROUTE, "targetType": "AGENT", "agentId": "agent-1"}).status_code in (200, 201)
    for turn in ("t-1", "t-2"):
        message = f"m-{turn}"
        assert client.simulate_post(INGRESS, json={
            **ENVELOPE, "externalMessageId": message}).status_code == 202
        assert client.simulate_post("/rest/api/channel-receipts/turns", json={
            **ROUTE, "externalMessageId": message, "turnId": turn,
            "agentId": "agent-1"}).status_code == 200
        r = client.simulate_post("/rest/api/channel-replies", json={
            "agentId": "agent-1", "turnId": turn, "replyText": "hello"})
        assert r.json["published"] is True, r.json
        clock.tick(minutes=5)
    samples = scrape(client)
    assert value(samples, "autobyteus_outbox_entries", state="PENDING") == 2
    assert value(samples, "autobyteus_outbox_entries", state="DEAD_LETTER") == 0
    # The first reply was queued 10 minutes before the real now.
    assert value(samples, "autobyteus_outbox_oldest_pending_age_seconds") >= 600

    exact = outbox_backlog(store, now=clock.now)  # the clock moved 10 minutes in all
    assert exact["depth"] == {"PENDING": 2, "DISPATCHING": 0, "FAILED_RETRY": 0,
                              "DEAD_LETTER": 0}
    # Times are stored to the millisecond.
    assert exact["oldest_pending_age_s"] == pytest.approx(600.0, abs=0.001)


def test_shed_requests_are_counted(client: falcon.testing.TestClient, make_store: Any) -> None:
    store = make_store.open("lmdb")
    from domains.registry import build_services

    metrics = metrics_for(store, build_services(store))
    limiter = InflightLimiter(1)
    limiter.shed_listeners.append(metrics.count_shed)
    assert limiter.try_enter()
    assert not limiter.try_enter()
    assert not limiter.try_enter()
    limiter.leave()
    assert limiter.try_enter()
    samples = parse(metrics.exposition().decode())
    assert value(samples, "autobyteus_http_requests_shed_total") == 2
    assert limiter.shed_count == 2


@pytest.mark.parametrize("provider", ["lmdb", "file", "sqlite"])
def test_group_commit_batches_and_flushes(make_store: Any, provider: str) -> None:
    """The engine tells of its flushes: ``BatchingStore.flush_listeners``, each called with
    (write transactions in the batch, seconds, succeeded) after every durable flush."""
    store = make_store.open(provider)
    client = falcon.testing.TestClient(create_app(store, Settings(provider=provider)))
    for i in range(5):
        assert client.simulate_post("/rest/api/prompts", json={
            "name": f"p{i}", "category": "c", "promptContent": "x"}).status_code == 201
    samples = scrape(client)
    flushes = value(samples, "autobyteus_group_commit_flush_seconds_count")
    assert flushes is not None and flushes >= 5  # one request at a time: a flush each
    assert value(samples, "autobyteus_group_commit_batch_size_sum") >= 5
    assert value(samples, "autobyteus_group_commit_flush_failures_total") == 0


@pytest.mark.parametrize("provider", ["lmdb", "postgresql"])
def test_group_commit_series_only_where_flushes_are_told(make_store: Any, provider: str) -> None:
    """A store that does not tell of flushes (PostgreSQL has no batches) shows no group-commit
    series rather than empty ones that would read as "no flushes"."""
    store = make_store.open(provider)
    from domains.registry import build_services

    metrics = metrics_for(store, build_services(store))
    names = {name for name, _ in parse(metrics.exposition().decode())}
    has_series = any(n.startswith("autobyteus_group_commit_") for n in names)
    assert has_series == (provider != "postgresql")
