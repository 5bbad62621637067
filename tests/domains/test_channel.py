"""The external channel (domains.md section 7) on every backend: route rules, bindings, ingress
with its idempotency and one-transaction flow, receipts, the inbox, delivery events and reply
publishing."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from domains import channel
from domains.channel import codec, repository
from domains.channel.commands import DeliveryReport, InboundMessage
from domains.channel.service import ChannelService, next_status
from domains.errors import NotFoundError, PreconditionFailedError, ValidationError
from domains.shapes import parse
from engine import Store
from engine.indexes import TtlSweeper, check
from tests.domains.channel_support import (
    ENVELOPE,
    ROUTE_ARGS,
    ManualClock,
    bind_agent,
    ingest,
    keyword_service,
    normalize_route,
    routed_turn,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def svc(store: Store, clock: ManualClock) -> ChannelService:
    return keyword_service(store, clock=clock, callback_configured=True)


def race(n: int, fn: Any) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as exc:  # collected and checked by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def assert_consistent(store: Store) -> None:
    report = check(store, channel.collections())
    assert report.ok, str(report)


# -- route rules ----------------------------------------------------------------------------------
def test_enums_are_trimmed_and_upper_cased_and_pairs_are_checked() -> None:
    route = normalize_route(" whatsapp ", "personal_session\t", "a", "p", "  ")
    assert (route.provider, route.transport, route.thread_id) == ("WHATSAPP", "PERSONAL_SESSION",
                                                                  "")
    assert route.routing_key == "WHATSAPP:PERSONAL_SESSION:a:p:direct"
    assert normalize_route("wecom", "business_api", "a", "p", "t").routing_key == \
        "WECOM:BUSINESS_API:a:p:t"
    for provider, transport, field in [("SMS", "BUSINESS_API", "provider"),
                                       ("WHATSAPP", "EMAIL", "transport"),
                                       ("TELEGRAM", "PERSONAL_SESSION", "transport"),
                                       ("WECHAT", "BUSINESS_API", "transport"),
                                       ("WECOM", "PERSONAL_SESSION", "transport"),
                                       ("DISCORD", "PERSONAL_SESSION", "transport"),
                                       ("", "BUSINESS_API", "provider")]:
        with pytest.raises(ValidationError) as err:
            normalize_route(provider, transport, "a", "p")
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        normalize_route("WHATSAPP", "BUSINESS_API", " ", "p")
    assert err.value.field == "accountId"


@pytest.mark.parametrize("peer, thread, field", [
    ("user:1", None, None),
    ("channel:42", "77", None),
    ("channel:42", "", None),
    ("user:abc", None, "peerId"),
    ("guild:1", None, "peerId"),
    ("123", None, "peerId"),
    ("channel:42", "t1", "threadId"),
    ("user:42", "77", "threadId"),
])
def test_discord_peer_and_thread_rules(peer: str, thread: str | None, field: str | None) -> None:
    if field is None:
        assert normalize_route("discord", "BUSINESS_API", "bot", peer, thread).peer_id == peer
        return
    with pytest.raises(ValidationError) as err:
        normalize_route("discord", "BUSINESS_API", "bot", peer, thread)
    assert err.value.field == field


# -- bindings (7.1) -------------------------------------------------------------------------------
def test_binding_upsert_by_route(svc: ChannelService, clock: ManualClock) -> None:
    b1, created = svc.upsert_binding(**ROUTE_ARGS, target_type=" agent ", agent_id="a1")
    assert created and b1.id == "1" and b1.target_type == "AGENT"
    assert codec.to_json(b1)["threadId"] is None
    clock.advance(1)
    b2, created = svc.upsert_binding(**ROUTE_ARGS, thread_id="", target_type="TEAM",
                                     team_id="t1", target_member_name="lead")
    assert not created and b2.id == b1.id and b2.created_at == b1.created_at
    assert (b2.target_type, b2.agent_id, b2.team_id, b2.target_member_name) == \
        ("TEAM", None, "t1", "lead")
    assert b2.updated_at > b1.updated_at
    # another thread is another route
    b3, created = svc.upsert_binding(**ROUTE_ARGS, thread_id="th", target_type="AGENT",
                                     agent_id="a2")
    assert created and b3.id == "2"
    assert svc.get_binding("1") == b2


def test_binding_target_rules(svc: ChannelService) -> None:
    cases = [
        ({"target_type": "AGENT"}, "agentId"),
        ({"target_type": "AGENT", "agent_id": "a", "team_id": "t"}, "teamId"),
        ({"target_type": "AGENT", "agent_id": "a", "target_member_name": "m"},
         "targetMemberName"),
        ({"target_type": "TEAM"}, "teamId"),
        ({"target_type": "TEAM", "team_id": "t", "agent_id": "a"}, "agentId"),
        ({"target_type": "ROBOT", "agent_id": "a"}, "targetType"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationError) as err:
            svc.upsert_binding(**ROUTE_ARGS, **kwargs)
        assert err.value.field == field, kwargs
    with pytest.raises(ValidationError) as err:
        svc.upsert_binding(provider="telegram", transport="BUSINESS_API", account_id="bot",
                           peer_id="chat", target_type="TEAM", team_id="t")
    assert err.value.field == "targetType"
    b, _ = svc.upsert_binding(provider="telegram", transport="BUSINESS_API", account_id="bot",
                              peer_id="chat", target_type="AGENT", agent_id="a")
    assert b.route.provider == "TELEGRAM"
    assert svc.list_bindings().items == [b]


def test_binding_list_newest_first_with_cursor_and_delete(
    svc: ChannelService, clock: ManualClock, store: Store
) -> None:
    for i in range(7):
        clock.advance(1)
        bind_agent(svc, f"a{i}", peer_id=f"peer-{i}")
    clock.advance(1)
    bind_agent(svc, "again", peer_id="peer-2")  # moves to the front
    seen: list[str] = []
    cursor = None
    while True:
        page = svc.list_bindings(limit=3, cursor=cursor)
        seen += [b.route.peer_id for b in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["peer-2", "peer-6", "peer-5", "peer-4", "peer-3", "peer-1", "peer-0"]
    svc.delete_binding("3")
    with pytest.raises(NotFoundError):
        svc.delete_binding("3")
    with pytest.raises(NotFoundError):
        svc.get_binding("3")
    assert [b.id for b in svc.list_bindings().items] == ["7", "6", "5", "4", "2", "1"]
    # an id is never reused, even after the highest one is deleted
    svc.delete_binding("7")
    assert bind_agent(svc, "x", peer_id="peer-new").id == "8"
    with pytest.raises(ValidationError):
        svc.list_bindings(cursor="not-a-cursor")
    assert_consistent(store)


def test_binding_if_match(svc: ChannelService) -> None:
    b = bind_agent(svc)
    with pytest.raises(PreconditionFailedError):
        svc.upsert_binding(**ROUTE_ARGS, target_type="AGENT", agent_id="x", expected_etag="nope")
    b2, _ = svc.upsert_binding(**ROUTE_ARGS, target_type="AGENT", agent_id="x",
                               expected_etag=svc.etag(b))
    with pytest.raises(PreconditionFailedError):
        svc.delete_binding(b.id, expected_etag=svc.etag(b))
    svc.delete_binding(b.id, expected_etag=svc.etag(b2))
    with pytest.raises(PreconditionFailedError):  # If-Match on a route with no binding
        svc.upsert_binding(**ROUTE_ARGS, target_type="AGENT", agent_id="x", expected_etag="e")


def test_concurrent_upserts_of_one_route_make_one_binding(svc: ChannelService,
                                                          store: Store) -> None:
    results = race(8, lambda i: svc.upsert_binding(**ROUTE_ARGS, target_type="AGENT",
                                                   agent_id=f"a{i}"))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(created for _, created in results) == 1
    assert len({b.id for b, _ in results}) == 1
    assert len(svc.list_bindings().items) == 1
    assert_consistent(store)


# -- ingress (7.2, 7.3) ---------------------------------------------------------------------------
def test_unbound_keeps_the_key_free_so_the_replay_after_binding_is_routed_once(
    svc: ChannelService, store: Store
) -> None:
    first = ingest(svc)
    assert (first.disposition, first.binding_id, first.duplicate) == ("UNBOUND", None, False)
    assert first.idempotency_key == "WHATSAPP:BUSINESS_API:acc-1:peer-1:direct::m-1"
    receipt = svc.receipt(normalize_route(**ROUTE_ARGS), "m-1")
    assert receipt is not None and receipt.ingress_state == "UNBOUND"
    assert receipt.received_at.isoformat() == "2026-02-22T10:15:30.123000+00:00"
    with store.begin() as txn:  # the receipt is recorded, the key is not reserved
        assert repository.INGRESS_KEYS.expires_at(txn, ENVELOPE_KEY) is None
    again = ingest(svc)  # still unbound: UNBOUND again, the one receipt updated
    assert (again.disposition, again.duplicate) == ("UNBOUND", False)
    b = bind_agent(svc)
    replay = ingest(svc)
    assert (replay.disposition, replay.binding_id, replay.binding_resolved) == \
        ("ROUTED", b.id, True)
    receipt = svc.receipt(normalize_route(**ROUTE_ARGS), "m-1")
    assert (receipt.ingress_state, receipt.agent_id) == ("ROUTED", "agent-1")
    later = ingest(svc)
    assert later.disposition == "DUPLICATE" and later.duplicate and not later.binding_resolved
    assert [m.external_source.external_message_id
            for m in svc.inbox("AGENT", "agent-1").items] == ["m-1"]
    with store.begin() as txn:
        assert len(list(repository.RECEIPTS.scan(txn))) == 1
    # Unbinding afterwards does not make the routed message new again.
    svc.delete_binding(b.id)
    assert ingest(svc).disposition == "DUPLICATE"
    assert_consistent(store)


def test_sixty_four_replays_after_binding_route_once(svc: ChannelService, store: Store) -> None:
    assert ingest(svc).disposition == "UNBOUND"
    bind_agent(svc)
    results = race(64, lambda i: ingest(svc))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    dispositions = [r.disposition for r in results]
    assert dispositions.count("ROUTED") == 1 and dispositions.count("DUPLICATE") == 63
    assert len(svc.inbox("AGENT", "agent-1").items) == 1
    assert svc.receipt(normalize_route(**ROUTE_ARGS), "m-1").ingress_state == "ROUTED"
    assert ingest(svc).disposition == "DUPLICATE"
    assert_consistent(store)


def test_bound_then_a_second_message(svc: ChannelService) -> None:
    b = bind_agent(svc)
    routed = ingest(svc, externalMessageId="m-2", content="second")
    assert (routed.disposition, routed.binding_id, routed.binding_resolved) == \
        ("ROUTED", b.id, True)
    inbox = svc.inbox("agent", "agent-1").items
    assert [m.content for m in inbox] == ["second"]
    src = codec.to_json(inbox[0])["externalSource"]
    assert src == {"provider": "WHATSAPP", "transport": "BUSINESS_API", "accountId": "acc-1",
                   "peerId": "peer-1", "peerType": "USER", "threadId": None,
                   "externalMessageId": "m-2",
                   "routingKey": "WHATSAPP:BUSINESS_API:acc-1:peer-1:direct",
                   "receivedAt": "2026-02-22T10:15:30.123Z"}
    assert inbox[0].binding_id == b.id


def test_routed_word_is_a_setting(store: Store) -> None:
    svc = keyword_service(store, ingress_routed_disposition="ACCEPTED")
    bind_agent(svc)
    assert ingest(svc).disposition == "ACCEPTED"
    assert svc.receipt(normalize_route(**ROUTE_ARGS), "m-1").ingress_state == "ROUTED"
    assert ingest(svc).disposition == "DUPLICATE"
    assert ingest(svc, peerId="other").disposition == "UNBOUND"


def test_envelope_is_lenient_about_unknown_fields_and_strict_about_known_ones(
    svc: ChannelService
) -> None:
    bind_agent(svc, thread_id=None)
    result = ingest(svc, routingKey="whatever:the:gateway:says", threadId=None,
                    futureField={"x": 1},
                    attachments=[{"kind": "image", "url": "https://x/y.png", "sizeBytes": 3,
                                  "newThing": True}],
                    metadata={"raw": {"a": 1}})
    assert result.disposition == "ROUTED"
    m = svc.inbox("AGENT", "agent-1").items[0]
    assert m.attachments[0].url == "https://x/y.png" and m.metadata == {"raw": {"a": 1}}
    bad = [({"peerType": "BOT"}, "peerType"), ({"externalMessageId": ""}, "externalMessageId"),
           ({"receivedAt": "yesterday"}, "receivedAt"), ({"receivedAt": None}, "receivedAt"),
           ({"content": 5}, "content"), ({"attachments": [{"kind": "x"}]}, "attachments[0].url"),
           ({"attachments": [{"kind": "x", "url": "u", "sizeBytes": -1}]},
            "attachments[0].sizeBytes"),
           ({"metadata": []}, "metadata"), ({"provider": None}, "provider"),
           ({"accountId": 7}, "accountId")]
    for override, field in bad:
        with pytest.raises(ValidationError) as err:
            ingest(svc, **override)
        assert err.value.field == field, override


def test_a_failed_ingress_leaves_nothing_and_the_retry_is_processed(
    svc: ChannelService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    bind_agent(svc)

    def broken(*args: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(repository, "append_inbox", broken)
    with pytest.raises(RuntimeError):
        ingest(svc)
    with store.begin() as txn:
        assert repository.INGRESS_KEYS.expires_at(txn, ENVELOPE_KEY) is None
        assert repository.receipt_of(txn, normalize_route(**ROUTE_ARGS), "m-1") is None
    monkeypatch.undo()
    assert ingest(svc).disposition == "ROUTED"
    assert len(svc.inbox("AGENT", "agent-1").items) == 1
    assert_consistent(store)


ENVELOPE_KEY = "WHATSAPP:BUSINESS_API:acc-1:peer-1:direct::m-1"


def test_sixty_four_concurrent_deliveries_route_once(svc: ChannelService, store: Store) -> None:
    bind_agent(svc)
    results = race(64, lambda i: ingest(svc))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    dispositions = sorted(r.disposition for r in results)
    assert dispositions.count("ROUTED") == 1 and dispositions.count("DUPLICATE") == 63
    assert len(svc.inbox("AGENT", "agent-1").items) == 1
    with store.begin() as txn:
        receipts = list(repository.RECEIPTS.scan(txn))
    assert len(receipts) == 1
    assert_consistent(store)


def test_idempotency_keys_expire_and_are_swept(store: Store, clock: ManualClock) -> None:
    svc = keyword_service(store, clock=clock, ingress_idempotency_ttl_s=60)
    bind_agent(svc)
    assert ingest(svc).disposition == "ROUTED"
    clock.advance(59)
    assert ingest(svc).disposition == "DUPLICATE"
    sweeper = TtlSweeper(store, channel.ttl_spaces(), clock=clock.seconds)
    assert sweeper.run_once() == 0  # still live
    clock.advance(2)
    assert sweeper.run_once() == 1
    with store.begin() as txn:
        assert repository.INGRESS_KEYS.expires_at(txn, ENVELOPE_KEY) is None
        assert not list(txn.scan(prefix=repository.INGRESS_KEYS.prefix))
    # first seen again: routed again, one receipt still (updated), two inbox entries
    assert ingest(svc).disposition == "ROUTED"
    assert len(svc.inbox("AGENT", "agent-1").items) == 2
    with store.begin() as txn:
        assert len(list(repository.RECEIPTS.scan(txn))) == 1


def test_an_expired_key_counts_as_new_even_before_the_sweep(store: Store,
                                                            clock: ManualClock) -> None:
    svc = keyword_service(store, clock=clock, ingress_idempotency_ttl_s=10)
    bind_agent(svc)
    assert ingest(svc).disposition == "ROUTED"
    clock.advance(11)
    assert ingest(svc).disposition == "ROUTED"
    assert ingest(svc).disposition == "DUPLICATE"


def test_a_ttl_of_zero_never_expires(store: Store, clock: ManualClock) -> None:
    svc = keyword_service(store, clock=clock, ingress_idempotency_ttl_s=0)
    bind_agent(svc)
    assert ingest(svc).disposition == "ROUTED"
    clock.advance(10 * 365 * 86400)
    assert TtlSweeper(store, channel.ttl_spaces(), clock=clock.seconds).run_once() == 0
    assert ingest(svc).disposition == "DUPLICATE"


# -- receipts (7.4) -------------------------------------------------------------------------------
def test_turn_binding_works_before_or_after_ingress(svc: ChannelService, clock: ManualClock,
                                                    store: Store) -> None:
    bind_agent(svc)
    # after: ingress, then the turn binding
    ingest(svc, externalMessageId="m-1")
    r1 = svc.bind_turn(**ROUTE_ARGS, external_message_id="m-1", turn_id="t-1",
                       agent_id="agent-1")
    assert (r1.turn_id, r1.agent_id, r1.ingress_state) == ("t-1", "agent-1", "ROUTED")
    # before: the turn binding, then ingress
    clock.advance(1)
    r2 = svc.bind_turn(**ROUTE_ARGS, external_message_id="m-2", turn_id="t-2",
                       agent_id="agent-1")
    assert r2.ingress_state is None
    ingest(svc, externalMessageId="m-2", receivedAt="2026-02-22T11:00:00Z")
    r2 = svc.receipt(normalize_route(**ROUTE_ARGS), "m-2")
    assert (r2.turn_id, r2.agent_id, r2.ingress_state) == ("t-2", "agent-1", "ROUTED")
    assert codec.to_json(r2)["receivedAt"] == "2026-02-22T11:00:00.000Z"
    assert svc.source_of_turn("agent-1", "t-1").external_message_id == "m-1"
    assert svc.source_of_turn("agent-1", "t-2").external_message_id == "m-2"
    assert svc.source_of_turn("agent-1", "t-3") is None
    assert svc.source_of_turn("agent-2", "t-1") is None
    assert svc.latest_source_of_agent("agent-1").external_message_id == "m-2"
    assert svc.latest_source_of_agent("nobody") is None
    with pytest.raises(ValidationError) as err:
        svc.bind_turn(**ROUTE_ARGS, external_message_id="m-1", turn_id="t")
    assert err.value.field == "agentId"
    assert_consistent(store)


def test_latest_source_of_a_team(svc: ChannelService) -> None:
    svc.upsert_binding(**ROUTE_ARGS, target_type="TEAM", team_id="team-1")
    ingest(svc, externalMessageId="m-1", receivedAt="2026-02-22T10:00:00Z")
    ingest(svc, externalMessageId="m-2", receivedAt="2026-02-22T12:00:00Z")
    ingest(svc, externalMessageId="m-3", receivedAt="2026-02-22T11:00:00Z")
    assert svc.latest_source_of_team("team-1").external_message_id == "m-2"
    assert [m.external_source.external_message_id
            for m in svc.inbox("TEAM", "team-1").items] == ["m-1", "m-2", "m-3"]


# -- inbox ----------------------------------------------------------------------------------------
def test_inbox_pages_oldest_first_and_ack_removes(svc: ChannelService, store: Store) -> None:
    bind_agent(svc)
    bind_agent(svc, "agent-2", peer_id="peer-2")
    for i in range(5):
        ingest(svc, externalMessageId=f"m-{i}", content=f"c{i}")
    ingest(svc, externalMessageId="x", peerId="peer-2")
    seen = []
    cursor = None
    while True:
        page = svc.inbox("AGENT", "agent-1", limit=2, cursor=cursor)
        seen += [m.content for m in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["c0", "c1", "c2", "c3", "c4"]
    ids = [m.id for m in svc.inbox("AGENT", "agent-1").items]
    other = svc.inbox("AGENT", "agent-2").items[0].id
    # another target's message and unknown ids are not acknowledged; repeats count once
    assert svc.ack("AGENT", "agent-1", [ids[0], ids[1], ids[1], other, "999", "x"]) == 2
    assert [m.content for m in svc.inbox("AGENT", "agent-1").items] == ["c2", "c3", "c4"]
    assert svc.ack("agent", "agent-1", [ids[0]]) == 0
    assert len(svc.inbox("AGENT", "agent-2").items) == 1
    assert svc.inbox("TEAM", "agent-1").items == []
    with pytest.raises(ValidationError):
        svc.inbox("ROBOT", "x")
    assert_consistent(store)


# -- delivery events (7.7) ------------------------------------------------------------------------
def test_status_order() -> None:
    assert next_status("PENDING", "SENT", from_gateway=True) == "SENT"
    assert next_status("DELIVERED", "SENT", from_gateway=True) == "DELIVERED"
    assert next_status("DELIVERED", "FAILED", from_gateway=True) == "DELIVERED"
    assert next_status("SENT", "PENDING", from_gateway=True) == "SENT"
    assert next_status("SENT", "FAILED", from_gateway=True) == "FAILED"
    assert next_status("FAILED", "SENT", from_gateway=True) == "SENT"
    assert next_status("FAILED", "DELIVERED", from_gateway=True) == "DELIVERED"
    assert next_status("FAILED", "SENT", from_gateway=False) == "FAILED"


def test_gateway_delivery_events(svc: ChannelService, store: Store) -> None:
    def post(**body: Any) -> Any:
        return svc.record_delivery_event(parse(DeliveryReport, {
            "provider": "WHATSAPP", "transport": "BUSINESS_API", "accountId": "acc-1",
            "peerId": "peer-1", "correlationMessageId": "m-1", "unknown": 1, **body}))

    e = post(status="sent", metadata={"callbackIdempotencyKey": "k1"})
    assert (e.callback_idempotency_key, e.status, e.error_message) == ("k1", "SENT", None)
    e = post(status="DELIVERED", metadata={"callbackIdempotencyKey": "k1", "n": 2})
    assert e.status == "DELIVERED" and e.metadata == {"callbackIdempotencyKey": "k1", "n": 2}
    e = post(status="SENT", metadata={"callbackIdempotencyKey": "k1", "late": True})
    assert e.status == "DELIVERED" and "late" not in e.metadata  # ignored entirely
    e = post(status="FAILED", errorMessage="nope", metadata={"callbackIdempotencyKey": "k1"})
    assert e.status == "DELIVERED" and e.error_message is None
    # no key in the metadata: the correlation message id is the key
    e = post(status="FAILED", metadata={"errorMessage": "rate limited"})
    assert (e.callback_idempotency_key, e.status, e.error_message) == \
        ("m-1", "FAILED", "rate limited")
    e = post(status="SENT")
    assert (e.status, e.error_message) == ("SENT", None)
    assert svc.delivery_event("m-1").status == "SENT"
    with pytest.raises(NotFoundError):
        svc.delivery_event("nope")
    with pytest.raises(ValidationError) as err:
        post(status="READ")
    assert err.value.field == "status"
    with pytest.raises(ValidationError) as err:
        post(status="SENT", correlationMessageId=None)
    assert err.value.field == "correlationMessageId"
    assert_consistent(store)


# -- reply publishing (7.5) -----------------------------------------------------------------------
def test_reply_gates_in_order(store: Store, clock: ManualClock) -> None:
    svc = keyword_service(store, clock=clock, callback_configured=True)
    off = keyword_service(store, clock=clock, callback_configured=False)

    def reason(service: ChannelService = svc, **kw: Any) -> str | None:
        args = {"agent_id": "agent-1", "turn_id": "t-1", "reply_text": "hi", **kw}
        return service.publish_reply(**args).reason

    assert reason(turn_id=None, reply_text="") == "TURN_ID_MISSING"
    assert reason(turn_id="  ") == "TURN_ID_MISSING"
    assert reason(reply_text="  \n") == "EMPTY_REPLY"
    assert reason(off, reply_text=None) == "EMPTY_REPLY"
    assert reason(off) == "CALLBACK_NOT_CONFIGURED"
    assert reason() == "SOURCE_NOT_FOUND"
    bind_agent(svc)
    routed_turn(svc, "m-1", "t-1")
    svc.upsert_binding(**ROUTE_ARGS, target_type="AGENT", agent_id="someone-else")
    assert reason() == "BINDING_NOT_FOUND"
    bind_agent(svc)
    result = svc.publish_reply(agent_id="agent-1", turn_id="t-1", reply_text="hi")
    assert (result.published, result.reason, result.callback_idempotency_key) == \
        (True, None, "external-reply:agent-1:t-1")
    assert reason() == "DUPLICATE"
    svc.delete_binding("1")
    assert reason() == "BINDING_NOT_FOUND"  # source and binding gates come first
    with pytest.raises(ValidationError):
        svc.publish_reply(agent_id="", turn_id="t", reply_text="x")


def test_publish_writes_event_and_outbox_in_one_transaction(svc: ChannelService, store: Store,
                                                            clock: ManualClock,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    bind_agent(svc, thread_id="th-9")
    ingest(svc, threadId="th-9")
    svc.bind_turn(**ROUTE_ARGS, thread_id="th-9", external_message_id="m-1", turn_id="t-1",
                  agent_id="agent-1")
    woken = []
    svc.outbox_listeners.append(lambda: woken.append(1))

    def broken(*args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(repository, "put_outbox", broken)
    with pytest.raises(RuntimeError):
        svc.publish_reply(agent_id="agent-1", turn_id="t-1", reply_text="hello")
    monkeypatch.undo()
    with pytest.raises(NotFoundError):  # the event was rolled back with the key
        svc.delivery_event("external-reply:agent-1:t-1")
    assert svc.publish_reply(agent_id="agent-1", turn_id="t-1", reply_text="hello").published
    assert woken == [1]
    event = svc.delivery_event("external-reply:agent-1:t-1")
    assert (event.status, event.correlation_message_id, event.route.thread_id) == \
        ("PENDING", "m-1", "th-9")
    [entry] = svc.list_outbox().items
    assert entry.status == "PENDING" and entry.attempts == 0
    assert entry.envelope == {
        "provider": "WHATSAPP", "transport": "BUSINESS_API", "accountId": "acc-1",
        "peerId": "peer-1", "threadId": "th-9", "correlationMessageId": "m-1",
        "callbackIdempotencyKey": "external-reply:agent-1:t-1", "replyText": "hello",
        "attachments": [], "chunks": [], "metadata": {"turnId": "t-1"},
    }
    assert svc.list_outbox(status="pending").items == [entry]
    assert svc.list_outbox(status="SENT").items == []
    with pytest.raises(ValidationError):
        svc.list_outbox(status="LOST")
    assert_consistent(store)


def test_callback_key_expires(store: Store, clock: ManualClock) -> None:
    svc = keyword_service(store, clock=clock, callback_configured=True,
                         callback_idempotency_ttl_s=5)
    bind_agent(svc)
    routed_turn(svc, "m-1", "t-1")
    assert svc.publish_reply(agent_id="agent-1", turn_id="t-1", reply_text="a").published
    assert svc.publish_reply(agent_id="agent-1", turn_id="t-1", reply_text="a").reason == \
        "DUPLICATE"
    clock.advance(6)
    assert TtlSweeper(store, channel.ttl_spaces(), clock=clock.seconds).run_once() == 1
    assert svc.publish_reply(agent_id="agent-1", turn_id="t-1", reply_text="a").published
    assert len(svc.list_outbox().items) == 2


def test_a_team_member_replies_for_its_team(svc: ChannelService) -> None:
    svc.upsert_binding(**ROUTE_ARGS, target_type="TEAM", team_id="team-1",
                       target_member_name="lead")
    ingest(svc)
    svc.bind_turn(**ROUTE_ARGS, external_message_id="m-1", turn_id="t-1", agent_id="member-a",
                  team_id="team-1")
    assert svc.publish_reply(agent_id="member-a", turn_id="t-1", reply_text="x").published
    svc.upsert_binding(**ROUTE_ARGS, target_type="TEAM", team_id="team-2")
    svc.bind_turn(**ROUTE_ARGS, external_message_id="m-1", turn_id="t-2", agent_id="member-a")
    assert svc.publish_reply(agent_id="member-a", turn_id="t-2", reply_text="x").reason == \
        "BINDING_NOT_FOUND"


def test_ingress_envelope_constant_is_what_the_gateway_sends() -> None:
    assert parse(InboundMessage, dict(ENVELOPE)).thread_id is None
