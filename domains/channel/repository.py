"""External-channel records on the engine's index layer.

Key layout (tuples packed by engine.keys; ``route`` is the five elements provider, transport,
accountId, peerId, threadId with ``""`` for no thread; times are epoch milliseconds)::

    ("c", "channel_bindings", "r", id)                               -> codec bytes
    ("c", "channel_bindings", "u", "route", *route)                  -> id   one target per route
    ("c", "channel_bindings", "o", "recent", -updatedMs, -id, id)    list: newest updatedAt first

    ("c", "channel_receipts", "r", id)                               -> codec bytes
    ("c", "channel_receipts", "u", "message", *route, externalMessageId) -> id
    ("c", "channel_receipts", "o", "agent_turn", agentId, turnId, receivedMs, id)
    ("c", "channel_receipts", "o", "agent_recent", agentId, receivedMs, id)
    ("c", "channel_receipts", "o", "team_recent", teamId, receivedMs, id)

    ("c", "channel_inbox", "r", id)                                  -> codec bytes
    ("c", "channel_inbox", "o", "target", targetType, targetId, id)  oldest first (ids ascend)

    ("c", "channel_delivery_events", "r", id)                        -> codec bytes
    ("c", "channel_delivery_events", "u", "key", callbackIdempotencyKey) -> id

    ("c", "channel_outbox", "r", id)                                 -> codec bytes
    ("c", "channel_outbox", "o", "due", dueMs, id)     PENDING, FAILED_RETRY (next attempt) and
                                                       DISPATCHING (lease expiry) entries only
    ("c", "channel_outbox", "o", "status", status, id)               operators' list by status

    ("t", "channel_ingress", ...)   ingress idempotency keys "<routingKey>::<externalMessageId>"
    ("t", "channel_callback", ...)  reply keys "external-reply:<agentId>:<turnId>"
    ("q", <collection>)             the id sequences

Long key elements are hashed (unique indexes) or clipped (ordered indexes) by the index layer;
lookups compare the full values of the records they load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from domains.channel import codec
from domains.channel.models import (
    DISPATCHING,
    FAILED_RETRY,
    OUTBOX_PENDING,
    OUTBOX_STATUSES,
    Binding,
    DeliveryEvent,
    InboxMessage,
    OutboxEntry,
    Receipt,
    Route,
)
from domains.common import decode_cursor, encode_cursor, to_millis
from domains.errors import ValidationError
from engine import Transaction
from engine.indexes import Collection, OrderedIndex, TtlSpace, UniqueIndex
from engine.keys import pack, unpack

BINDINGS = Collection(
    "channel_bindings",
    codec.decoder(Binding),
    unique=[UniqueIndex("route", lambda b: b.route.as_tuple())],
    # Ties within one millisecond go to the newer binding (higher id), as "newest first" means.
    ordered=[OrderedIndex("recent", lambda b: (-to_millis(b.updated_at), -int(b.id)))],
)


def _agent_turn(r: Receipt) -> Any:
    if r.agent_id is None or r.turn_id is None:
        return None
    return (r.agent_id, r.turn_id, to_millis(r.received_at))


RECEIPTS = Collection(
    "channel_receipts",
    codec.decoder(Receipt),
    unique=[UniqueIndex("message", lambda r: (*r.route.as_tuple(), r.external_message_id))],
    ordered=[
        OrderedIndex("agent_turn", _agent_turn),
        OrderedIndex("agent_recent", lambda r: None if r.agent_id is None
                     else (r.agent_id, to_millis(r.received_at))),
        OrderedIndex("team_recent", lambda r: None if r.team_id is None
                     else (r.team_id, to_millis(r.received_at))),
    ],
)

INBOX = Collection(
    "channel_inbox",
    codec.decoder(InboxMessage),
    ordered=[OrderedIndex("target", lambda m: (m.target_type, m.target_id))],
)

DELIVERY_EVENTS = Collection(
    "channel_delivery_events",
    codec.decoder(DeliveryEvent),
    unique=[UniqueIndex("key", lambda e: e.callback_idempotency_key)],
)

OUTBOX = Collection(
    "channel_outbox",
    codec.decoder(OutboxEntry),
    ordered=[
        OrderedIndex("due", lambda o: None if o.due_at is None else (to_millis(o.due_at),)),
        OrderedIndex("status", lambda o: (o.status,)),
    ],
)

INGRESS_KEYS = TtlSpace("channel_ingress")
CALLBACK_KEYS = TtlSpace("channel_callback")

COLLECTIONS = [BINDINGS, RECEIPTS, INBOX, DELIVERY_EVENTS, OUTBOX]
TTL_SPACES = [INGRESS_KEYS, CALLBACK_KEYS]


def ingress_key_live(txn: Transaction, key: str, now: float) -> bool:
    """Whether ``key`` is held and not expired at ``now`` (what reserve() would call a
    duplicate), without reserving it."""
    expires = INGRESS_KEYS.expires_at(txn, key)
    return expires is not None and (expires == 0 or now < expires)


# -- pages over an ordered index --------------------------------------------------------------
def _cursor_key(coll: Collection, index: str, cursor: str | None) -> bytes | None:
    position = decode_cursor(cursor)
    if position is None:
        return None
    if not isinstance(position, list) or not all(
        isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)) for v in position
    ):
        raise ValidationError("cursor is not one this list issued", field="cursor")
    try:
        return coll.ordered_prefix + pack((index, *position))
    except (TypeError, ValueError):
        raise ValidationError("cursor is not one this list issued", field="cursor") from None


def index_page(
    txn: Transaction,
    coll: Collection,
    index: str,
    prefix: Any = (),
    *,
    limit: int,
    cursor: str | None,
    keep: Callable[[Any], bool] | None = None,
    reverse: bool = False,
) -> tuple[list[Any], str | None]:
    """One page of decoded records in index order, and the cursor of the next page.

    The cursor holds the index key of the page's last item, so a walk sees every record that is
    present throughout it exactly once even while others come and go. A cursor of another
    list (another prefix) simply starts outside this list's range and yields nothing.
    """
    after = _cursor_key(coll, index, cursor)
    base = coll.ordered_prefix + pack((index,))
    items: list[Any] = []
    last: bytes | None = None
    chunk = limit + 1
    while True:
        hits = list(coll.query_keys(txn, index, prefix, after=after, limit=chunk,
                                    reverse=reverse))
        for key, rid in hits:
            record = coll.get_record(txn, rid)
            if record is None or (keep is not None and not keep(record)):
                continue
            if len(items) == limit:
                assert last is not None
                return items, encode_cursor(list(unpack(last[len(base):])))
            items.append(record)
            last = key
        if len(hits) < chunk:
            return items, None
        after = hits[-1][0]


# -- bindings -----------------------------------------------------------------------------------
def binding(txn: Transaction, binding_id: str) -> Binding | None:
    if not binding_id:
        return None
    return BINDINGS.get_record(txn, binding_id)


def binding_of_route(txn: Transaction, route: Route) -> Binding | None:
    rid = BINDINGS.lookup(txn, "route", route.as_tuple())
    return None if rid is None else BINDINGS.get_record(txn, rid)


def put_binding(txn: Transaction, b: Binding) -> bool:
    return BINDINGS.put(txn, b.id, codec.to_bytes(b), b)


# -- receipts -----------------------------------------------------------------------------------
def receipt_of(txn: Transaction, route: Route, external_message_id: str) -> Receipt | None:
    rid = RECEIPTS.lookup(txn, "message", (*route.as_tuple(), external_message_id))
    return None if rid is None else RECEIPTS.get_record(txn, rid)


def put_receipt(txn: Transaction, r: Receipt) -> bool:
    return RECEIPTS.put(txn, r.id, codec.to_bytes(r), r)


def _latest(txn: Transaction, index: str, prefix: tuple[Any, ...],
            match: Callable[[Receipt], bool]) -> Receipt | None:
    # Newest first; the match re-checks full values (a long element may have been clipped).
    for rid in RECEIPTS.query(txn, index, prefix, reverse=True):
        r = RECEIPTS.get_record(txn, rid)
        if r is not None and match(r):
            return r
    return None


def source_of_turn(txn: Transaction, agent_id: str, turn_id: str) -> Receipt | None:
    return _latest(txn, "agent_turn", (agent_id, turn_id),
                   lambda r: r.agent_id == agent_id and r.turn_id == turn_id)


def latest_of_agent(txn: Transaction, agent_id: str) -> Receipt | None:
    return _latest(txn, "agent_recent", (agent_id,), lambda r: r.agent_id == agent_id)


def latest_of_team(txn: Transaction, team_id: str) -> Receipt | None:
    return _latest(txn, "team_recent", (team_id,), lambda r: r.team_id == team_id)


# -- inbox --------------------------------------------------------------------------------------
def append_inbox(txn: Transaction, m: InboxMessage) -> None:
    INBOX.insert(txn, m.id, codec.to_bytes(m), m)


def inbox_message(txn: Transaction, message_id: str) -> InboxMessage | None:
    if not message_id:
        return None
    return INBOX.get_record(txn, message_id)


# -- delivery events ----------------------------------------------------------------------------
def delivery_event(txn: Transaction, key: str) -> DeliveryEvent | None:
    rid = DELIVERY_EVENTS.lookup(txn, "key", key)
    return None if rid is None else DELIVERY_EVENTS.get_record(txn, rid)


def put_delivery_event(txn: Transaction, e: DeliveryEvent) -> bool:
    return DELIVERY_EVENTS.put(txn, e.id, codec.to_bytes(e), e)


# -- outbox -------------------------------------------------------------------------------------
def outbox_entry(txn: Transaction, entry_id: str) -> OutboxEntry | None:
    if not entry_id:
        return None
    return OUTBOX.get_record(txn, entry_id)


def put_outbox(txn: Transaction, o: OutboxEntry) -> bool:
    return OUTBOX.put(txn, o.id, codec.to_bytes(o), o)


def due_outbox(txn: Transaction, now_ms: int, limit: int) -> Iterator[OutboxEntry]:
    """Entries whose next attempt or lease expiry is at or before ``now_ms``, earliest first."""
    for rid in OUTBOX.query(txn, "due", end=(now_ms,), end_inclusive=True, limit=limit):
        o = OUTBOX.get_record(txn, rid)
        if o is not None:
            yield o


def next_due_ms(txn: Transaction) -> int | None:
    for key, _ in OUTBOX.query_keys(txn, "due", limit=1):
        return unpack(key[len(OUTBOX.ordered_prefix + pack(("due",))):])[0]  # type: ignore
    return None


def outbox_counts(txn: Transaction) -> dict[str, int]:
    """How many entries are in each state: the status index's keys are counted (no records
    are read), so this costs one key per entry; operators ask for it, the worker never does."""
    return {
        status: sum(1 for _ in txn.scan(prefix=OUTBOX.ordered_prefix + pack(("status", status))))
        for status in OUTBOX_STATUSES
    }


def oldest_unfinished(txn: Transaction) -> OutboxEntry | None:
    """The oldest entry not yet SENT or dead-lettered (ids ascend with creation)."""
    oldest: OutboxEntry | None = None
    for status in (OUTBOX_PENDING, FAILED_RETRY, DISPATCHING):
        for rid in OUTBOX.query(txn, "status", (status,), limit=1):
            o = OUTBOX.get_record(txn, rid)
            if o is not None and (oldest is None or int(o.id) < int(oldest.id)):
                oldest = o
    return oldest
