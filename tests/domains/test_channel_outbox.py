"""The outbox worker (domains.md 7.6) against a real HTTP gateway stub on 127.0.0.1, on every
backend: retries through failures and timeouts, signatures, dead letters, lease takeover and a
clean stop. Backoff runs on an injected clock, so no test waits for it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from domains.channel.commands import DeliveryReport
from domains.channel.outbox import OutboxWorker
from domains.channel.service import ChannelService
from domains.errors import ConflictError, NotFoundError, ValidationError
from domains.shapes import parse
from engine import Store
from tests.domains.channel_support import (
    FloatClock,
    GatewayStub,
    ManualClock,
    bind_agent,
    keyword_service,
    routed_turn,
)

SECRET = "callback-secret"


@pytest.fixture
def svc(store: Store) -> ChannelService:
    return keyword_service(store, clock=ManualClock(), callback_configured=True)


@pytest.fixture
def gateway() -> Iterator[GatewayStub]:
    stub = GatewayStub(secret=SECRET)
    yield stub
    stub.close()


def publish(svc: ChannelService, n: int) -> list[str]:
    bind_agent(svc)
    keys = []
    for i in range(n):
        routed_turn(svc, f"m-{i}", f"t-{i}")
        result = svc.publish_reply(agent_id="agent-1", turn_id=f"t-{i}", reply_text=f"reply {i}")
        assert result.published
        keys.append(result.callback_idempotency_key)
    return keys


def make_worker(svc: ChannelService, gateway: GatewayStub, clock: FloatClock,
                **kw: Any) -> OutboxWorker:
    options: dict[str, Any] = {"shared_secret": SECRET, "timeout_ms": 300, "clock": clock,
                               "rng": lambda: 0.5, "base_delay": 1.0}
    options.update(kw)
    return OutboxWorker(svc, base_url=gateway.base_url, **options)


def drain(worker: OutboxWorker, clock: FloatClock, svc: ChannelService, rounds: int = 40,
          step: float = 5.0) -> None:
    for _ in range(rounds):
        worker.run_once()
        if not [o for o in svc.list_outbox().items if o.status not in ("SENT", "DEAD_LETTER")]:
            return
        clock.advance(step)
    raise AssertionError("the outbox did not drain: "
                         + repr([(o.id, o.status) for o in svc.list_outbox().items]))


def test_retries_through_a_500_and_a_timeout_then_every_reply_arrives(
    svc: ChannelService, gateway: GatewayStub
) -> None:
    keys = publish(svc, 3)
    gateway.plan = [500, ("sleep", 1.0), 503, 429]
    clock = FloatClock()
    worker = make_worker(svc, gateway, clock)
    worker.run_once()  # reply 0: 500; reply 1: timeout; reply 2: 503
    statuses = {o.callback_idempotency_key: (o.status, o.attempts) for o in
                svc.list_outbox().items}
    assert statuses == {k: ("FAILED_RETRY", 1) for k in keys}
    errors = {o.callback_idempotency_key: o.last_error for o in svc.list_outbox().items}
    assert errors[keys[0]] == '500 {"code":"HTTP_500"}'
    assert errors[keys[1]].startswith("network error")
    assert svc.delivery_event(keys[0]).status == "PENDING"
    assert worker.run_once() == 0  # not due yet: the delay is min(60, 1 * 2^0) + jitter
    drain(worker, clock, svc)
    assert set(gateway.delivered) == set(keys)  # every reply, once each at the gateway
    assert gateway.bad_signatures == 0
    for r in gateway.requests:
        assert r["headers"]["x-autobyteus-server-signature"]
        assert r["headers"]["content-type"] == "application/json"
    for key in keys:
        assert svc.delivery_event(key).status == "SENT"
    entries = svc.list_outbox(status="SENT").items
    assert len(entries) == 3 and all(o.lease_owner is None and o.due_at is None for o in entries)
    assert sorted(o.attempts for o in entries) == [2, 2, 3]  # reply 0: 500 then 429
    assert gateway.delivered[keys[1]]["replyText"] == "reply 1"
    assert gateway.delivered[keys[1]]["correlationMessageId"] == "m-1"


def test_a_resent_reply_is_deduplicated_by_the_gateway(svc: ChannelService,
                                                       gateway: GatewayStub) -> None:
    # The gateway took the reply but the answer was lost (we timed out): the retry is harmless.
    [key] = publish(svc, 1)
    gateway.plan = [("sleep", 0.8)]
    clock = FloatClock()
    worker = make_worker(svc, gateway, clock)
    worker.run_once()
    time.sleep(0.9)  # let the stub finish holding the first copy
    drain(worker, clock, svc)
    assert len([r for r in gateway.requests]) == 2
    assert list(gateway.delivered) == [key]
    assert svc.delivery_event(key).status == "SENT"


def test_a_rejected_reply_is_dead_lettered_at_once(svc: ChannelService,
                                                   gateway: GatewayStub) -> None:
    [key] = publish(svc, 1)
    gateway.plan = [400]
    clock = FloatClock()
    worker = make_worker(svc, gateway, clock)
    assert worker.run_once() == 1
    [entry] = svc.list_outbox().items
    assert (entry.status, entry.attempts, entry.last_error) == \
        ("DEAD_LETTER", 1, '400 {"code":"HTTP_400"}')
    event = svc.delivery_event(key)
    assert (event.status, event.error_message) == ("FAILED", '400 {"code":"HTTP_400"}')
    clock.advance(3600)
    assert worker.run_once() == 0  # a dead letter is never taken again
    assert svc.list_outbox(status="DEAD_LETTER").items == [entry]


@pytest.mark.parametrize("status", [404, 422])
def test_other_refusals_dead_letter_at_once(svc: ChannelService, gateway: GatewayStub,
                                            status: int) -> None:
    publish(svc, 1)
    gateway.plan = [status]
    make_worker(svc, gateway, FloatClock()).run_once()
    [entry] = svc.list_outbox().items
    assert (entry.status, entry.attempts) == ("DEAD_LETTER", 1)
    assert entry.last_error == f'{status} {{"code":"HTTP_{status}"}}'


def test_a_bad_signature_is_retried_until_the_secret_is_fixed(
    svc: ChannelService, gateway: GatewayStub, caplog: pytest.LogCaptureFixture
) -> None:
    [key] = publish(svc, 1)
    clock = FloatClock()
    wrong = make_worker(svc, gateway, clock, shared_secret="wrong-secret-value")
    for _ in range(3):  # 401 is an operator's configuration error: retried with backoff
        wrong.run_once()
        clock.advance(60)
    assert gateway.bad_signatures == 3
    [entry] = svc.list_outbox().items
    assert (entry.status, entry.attempts) == ("FAILED_RETRY", 3)
    assert entry.last_error == \
        '401 {"code":"INVALID_SIGNATURE","message":"Invalid server callback signature."}'
    sent = [r["headers"]["x-autobyteus-server-signature"] for r in gateway.requests]
    assert svc.delivery_event(key).status == "PENDING"
    # The operator fixes the secret: the next attempt goes through.
    make_worker(svc, gateway, clock).run_once()
    assert svc.list_outbox().items[0].status == "SENT"
    assert list(gateway.delivered) == [key]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    for record in caplog.records:
        assert "wrong-secret-value" not in record.getMessage()
        assert not any(sig in record.getMessage() for sig in sent)


def test_a_forbidden_callback_is_retried_too(svc: ChannelService, gateway: GatewayStub) -> None:
    publish(svc, 1)
    gateway.plan = [403]
    make_worker(svc, gateway, FloatClock()).run_once()
    [entry] = svc.list_outbox().items
    assert (entry.status, entry.last_error) == ("FAILED_RETRY", '403 {"code":"HTTP_403"}')


def test_the_recorded_error_is_short_and_keeps_secrets_and_signatures_out(
    svc: ChannelService, gateway: GatewayStub
) -> None:
    publish(svc, 1)
    # A gateway that echoes what it got: our secret, a signature, and then a lot of text.
    echoed = json.dumps({"code": "BAD", "secret": SECRET, "sig": "ab" * 32, "more": "ü" * 400},
                        separators=(",", ":"), ensure_ascii=False).encode()
    gateway.plan = [(400, echoed)]
    make_worker(svc, gateway, FloatClock()).run_once()
    [entry] = svc.list_outbox().items
    error = entry.last_error
    assert error.startswith('400 {"code":"BAD","secret":"[redacted]","sig":"[redacted]"')
    assert SECRET not in error and "ab" * 32 not in error
    assert len(error.encode()) <= 500 and len(error.encode()) >= 495  # cut, whole characters
    assert svc.delivery_event(entry.callback_idempotency_key).error_message == error


def test_a_dead_letter_writes_one_warning(svc: ChannelService, gateway: GatewayStub,
                                          caplog: pytest.LogCaptureFixture) -> None:
    publish(svc, 1)
    gateway.plan = [400]
    with caplog.at_level("WARNING", logger="domains.channel.outbox"):
        make_worker(svc, gateway, FloatClock()).run_once()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert "dead-lettered" in line and "external-reply:agent-1:t-0" in line
    assert "WHATSAPP:BUSINESS_API:acc-1:peer-1:direct" in line and '400 {"code"' in line
    assert "reply 0" not in line and SECRET not in line  # never the body or the secret


def test_a_dead_letter_is_put_back_and_delivered(svc: ChannelService,
                                                 gateway: GatewayStub) -> None:
    [key] = publish(svc, 1)
    gateway.plan = [400]
    clock = FloatClock()
    worker = make_worker(svc, gateway, clock)
    worker.run_once()
    [dead] = svc.list_outbox(status="DEAD_LETTER").items
    assert svc.delivery_event(key).status == "FAILED"
    back = svc.retry_dead_letter(dead.id)
    assert (back.status, back.attempts, back.lease_owner) == ("PENDING", 0, None)
    assert back.last_error == dead.last_error  # kept for the record
    event = svc.delivery_event(key)
    assert (event.status, event.error_message) == ("PENDING", None)
    with pytest.raises(ConflictError):  # not dead (PENDING): a conflict
        svc.retry_dead_letter(dead.id)
    assert worker.run_once() == 1
    assert svc.outbox_entry(dead.id).status == "SENT"
    assert svc.delivery_event(key).status == "SENT"
    with pytest.raises(ConflictError):  # SENT: a conflict too
        svc.retry_dead_letter(dead.id)
    with pytest.raises(NotFoundError):
        svc.retry_dead_letter("999")


def test_a_put_back_entry_has_a_fresh_attempt_budget(svc: ChannelService,
                                                     gateway: GatewayStub) -> None:
    publish(svc, 1)
    gateway.plan = [503] * 3
    clock = FloatClock()
    worker = make_worker(svc, gateway, clock, max_attempts=2)
    drain(worker, clock, svc, step=10.0)
    [dead] = svc.list_outbox().items
    assert (dead.status, dead.attempts) == ("DEAD_LETTER", 2)
    svc.retry_dead_letter(dead.id)
    worker.run_once()  # the third 503: attempt 1 of a fresh budget of 2, so retried
    assert (svc.outbox_entry(dead.id).status, svc.outbox_entry(dead.id).attempts) == \
        ("FAILED_RETRY", 1)
    drain(worker, clock, svc, step=10.0)
    assert svc.outbox_entry(dead.id).status == "SENT"


def test_the_outbox_lists_newest_first_by_status_and_pages(svc: ChannelService,
                                                          gateway: GatewayStub) -> None:
    publish(svc, 5)
    gateway.plan = [400, 202, 400]  # entries 1 and 3 dead, 2 sent, 4 and 5 still pending
    worker = make_worker(svc, gateway, FloatClock(), batch_size=3)
    worker.run_once()
    assert [o.id for o in svc.list_outbox().items] == ["5", "4", "3", "2", "1"]
    assert [o.id for o in svc.list_outbox(status="dead_letter").items] == ["3", "1"]
    assert [o.id for o in svc.list_outbox(status="PENDING").items] == ["5", "4"]
    for status in (None, "PENDING"):
        seen, cursor = [], None
        while True:
            page = svc.list_outbox(status=status, limit=1, cursor=cursor)
            seen += [o.id for o in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == (["5", "4", "3", "2", "1"] if status is None else ["5", "4"])
    with pytest.raises(ValidationError):
        svc.list_outbox(status="LOST")


def test_the_outbox_summary_counts_states_and_ages_the_oldest_pending(
    store: Store, gateway: GatewayStub
) -> None:
    clock = ManualClock()
    svc = keyword_service(store, clock=clock, callback_configured=True)
    empty = svc.outbox_summary()
    assert empty.counts == {"PENDING": 0, "DISPATCHING": 0, "SENT": 0, "FAILED_RETRY": 0,
                            "DEAD_LETTER": 0}
    assert empty.oldest_pending_created_at is None and empty.oldest_pending_age_seconds is None
    publish(svc, 4)  # entry 1 created at t0
    clock.advance(30)
    gateway.plan = [202, 400, 503]
    make_worker(svc, gateway, FloatClock(clock.seconds()), batch_size=3).run_once()
    clock.advance(12.5)
    summary = svc.outbox_summary()
    assert summary.counts == {"PENDING": 1, "DISPATCHING": 0, "SENT": 1, "FAILED_RETRY": 1,
                              "DEAD_LETTER": 1}
    # entry 1 is SENT and 2 dead; the oldest still to deliver is 3 (FAILED_RETRY), 42.5 s old
    assert summary.oldest_pending_created_at == svc.outbox_entry("3").created_at
    assert summary.oldest_pending_age_seconds == pytest.approx(42.5)


def test_the_last_attempt_dead_letters(svc: ChannelService, gateway: GatewayStub) -> None:
    [key] = publish(svc, 1)
    gateway.plan = [503] * 20
    clock = FloatClock()
    worker = make_worker(svc, gateway, clock, max_attempts=4)
    drain(worker, clock, svc, step=10.0)
    [entry] = svc.list_outbox().items
    assert (entry.status, entry.attempts) == ("DEAD_LETTER", 4)
    assert len(gateway.requests) == 4
    assert svc.delivery_event(key).error_message == '503 {"code":"HTTP_503"}'


def test_network_errors_are_retried(svc: ChannelService) -> None:
    publish(svc, 1)
    down = GatewayStub()
    url = down.base_url
    down.close()  # nothing listens there now
    clock = FloatClock()
    worker = OutboxWorker(svc, base_url=url, clock=clock, timeout_ms=300)
    worker.run_once()
    [entry] = svc.list_outbox().items
    assert entry.status == "FAILED_RETRY" and entry.last_error.startswith("network error")


def test_backoff_schedule() -> None:
    worker = OutboxWorker(None, base_url="http://x", rng=lambda: 0.0)  # type: ignore[arg-type]
    assert [worker.delay_for(a) for a in range(1, 13)] == \
        [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60]
    worker.rng = lambda: 1.0
    assert worker.delay_for(1) == pytest.approx(1.2)
    assert worker.max_attempts == 12


def test_an_expired_lease_is_taken_over(svc: ChannelService, gateway: GatewayStub) -> None:
    [key] = publish(svc, 1)
    clock = FloatClock()
    # Worker A leases the entry and dies before sending it.
    [taken] = svc.lease_due("worker-a", now=clock(), lease_s=30, limit=10)
    assert (taken.status, taken.lease_owner, taken.attempts) == ("DISPATCHING", "worker-a", 1)
    b = make_worker(svc, gateway, clock, owner="worker-b")
    assert b.run_once() == 0  # the lease is live
    clock.advance(31)
    assert b.run_once() == 1
    [entry] = svc.list_outbox().items
    assert (entry.status, entry.attempts) == ("SENT", 2)
    assert list(gateway.delivered) == [key]
    # A comes back and reports late: its outcome is not recorded over B's.
    assert not svc.mark_retry(taken.id, "worker-a", now=clock(), error="x", retry_at=clock())
    assert not svc.mark_dead(taken.id, "worker-a", now=clock(), error="x")
    assert svc.list_outbox().items[0].status == "SENT"
    assert svc.delivery_event(key).status == "SENT"


def test_a_delivered_event_is_not_overwritten_by_the_workers_sent(
    svc: ChannelService, gateway: GatewayStub
) -> None:
    [key] = publish(svc, 1)
    svc.record_delivery_event(parse(DeliveryReport, {
        "provider": "WHATSAPP", "transport": "BUSINESS_API", "accountId": "acc-1",
        "peerId": "peer-1", "correlationMessageId": "m-0",
        "metadata": {"callbackIdempotencyKey": key}, "status": "DELIVERED"}))
    make_worker(svc, gateway, FloatClock()).run_once()
    assert svc.delivery_event(key).status == "DELIVERED"


def test_the_thread_delivers_promptly_and_stops_cleanly(svc: ChannelService,
                                                        gateway: GatewayStub) -> None:
    worker = OutboxWorker(svc, base_url=gateway.base_url, shared_secret=SECRET,
                          timeout_ms=1000, poll_interval=30.0)
    svc.outbox_listeners.append(worker.wake)
    worker.start()
    try:
        keys = publish(svc, 2)  # the wake-up, not the 30 s poll, gets them going
        deadline = time.monotonic() + 10
        while set(gateway.delivered) != set(keys) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert set(gateway.delivered) == set(keys)
    finally:
        started = time.monotonic()
        worker.stop()
        assert time.monotonic() - started < 2
    assert worker._thread is None
    deadline = time.monotonic() + 5
    while svc.list_outbox(status="SENT").items != svc.list_outbox().items:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_stopping_worker_hands_back_what_it_did_not_try(svc: ChannelService,
                                                          gateway: GatewayStub) -> None:
    publish(svc, 3)
    clock = FloatClock()
    worker = make_worker(svc, gateway, clock)
    worker._stop.set()  # stop was asked while the batch was being leased
    assert worker.run_once() == 0
    entries = svc.list_outbox().items
    assert [(o.status, o.attempts, o.lease_owner) for o in entries] == [("PENDING", 0, None)] * 3
    worker._stop.clear()
    assert worker.run_once() == 3
