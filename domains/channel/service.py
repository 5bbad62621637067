"""The rules of the external channel (domains.md section 7).

Every change is one write transaction run through ``engine.indexes.transact`` (retried only when a
concurrent writer made the backend give up). The ingress flow and reply publishing are each ONE
transaction: a failure anywhere leaves nothing behind, so a retry is processed afresh.

Decisions where the specification is silent (also in the report of issue 5):

- Ids (accountId, peerId, externalMessageId, agentId, turnId, ...) are kept exactly as given
  (blank is refused); only enums are trimmed and upper-cased, and a blank thread becomes ``""``.
- A DUPLICATE ingress answers ``bindingResolved: false, bindingId: null`` (nothing was resolved).
- A receipt created by a turn binding before its message arrived has ``ingressState: null`` and
  ``receivedAt`` = the binding time until the message's ingress fills both in. Ingress keeps the
  turn, agent and team that a binding set; it fills agentId/teamId from the route's binding only
  where they are still empty.
- Delivery-event statuses rank PENDING < SENT = FAILED < DELIVERED. An event never moves to a lower
  rank (a late SENT does not overwrite DELIVERED; FAILED after DELIVERED is ignored). Between SENT
  and FAILED the gateway's latest report wins (its own retry may go either way), but the outbox
  worker only ever advances PENDING (so its SENT cannot hide a FAILED the gateway already
  reported). ``errorMessage`` is kept only while the status is FAILED. An ignored event changes
  nothing, and the answer carries the stored status.
- A reply counts as "still bound" when the source route's binding targets this agent, or
  targets the TEAM that the source receipt names (a team member answering for its team).
- Publishing again after the callback key expired enqueues a new outbox entry; its delivery
  event is reset to PENDING only if it had FAILED.
- An outbox attempt is counted when the entry is leased, so a worker that dies mid-send uses up
  an attempt too (a poison entry cannot loop forever).
- UNBOUND leaves the ingress key free (domains.md 7.3), but a message whose key is live (it was
  routed, and its route was unbound since) is still a DUPLICATE, not UNBOUND.
- A dead letter put back keeps its last error (for the record) until the next attempt's outcome
  replaces it; its attempt count starts again at 0.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable
from typing import TypeVar

import attrs

from domains.channel import codec, repository
from domains.channel.commands import (
    AckMessages,
    BindTurn,
    DeliveryReport,
    InboundMessage,
    InboxTarget,
    PublishReply,
    PutBinding,
    RouteFields,
)
from domains.channel.models import (
    ALLOWED_PAIRS,
    CAPABILITIES,
    DEAD_LETTER,
    DISCORD_CHANNEL_PEER,
    DISCORD_PEER,
    DISCORD_THREAD,
    DISPATCHING,
    DUPLICATE,
    FAILED,
    FAILED_RETRY,
    OUTBOX_PENDING,
    OUTBOX_SENT,
    PENDING,
    ROUTED,
    SENT,
    STATUS_RANK,
    UNBOUND,
    Binding,
    DeliveryEvent,
    ExternalSource,
    InboundEnvelope,
    InboxMessage,
    IngressResult,
    OutboxEntry,
    OutboxSummary,
    Receipt,
    ReplyResult,
    Route,
    callback_key,
)
from domains.common import (
    Clock,
    Limit,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    etag_of,
    from_millis,
    to_millis,
    utc_now,
)
from domains.errors import (
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
    ValidationError,
)
from engine import Store, Transaction
from engine.indexes import transact

log = logging.getLogger(__name__)
T = TypeVar("T")


# -- rules that relate a body's fields (the fields themselves are checked by commands.py) -------
def route_of(fields: RouteFields) -> Route:
    """The route a checked body names: its provider x transport pair must be one of
    CAPABILITIES, and a Discord peer or thread must be a Discord id."""
    p, t, peer = fields.provider, fields.transport, fields.peer_id
    if (p, t) not in ALLOWED_PAIRS:
        raise ValidationError(
            f"transport {t} is not supported for provider {p}; supported pairs: "
            + ", ".join(sorted(f"{a}:{b}" for a, b in ALLOWED_PAIRS)),
            field="transport", code="UNSUPPORTED_TRANSPORT",
        )
    thread = fields.thread_id or ""
    if p == "DISCORD":
        if not DISCORD_PEER.fullmatch(peer):
            raise ValidationError(
                "a Discord peerId is user:<digits> or channel:<digits>", field="peerId",
                code="INVALID_DISCORD_PEER_ID",
            )
        if thread:
            if not DISCORD_THREAD.fullmatch(thread):
                raise ValidationError("a Discord threadId is digits", field="threadId",
                                      code="INVALID_DISCORD_THREAD_ID")
            if not DISCORD_CHANNEL_PEER.fullmatch(peer):
                raise ValidationError("a Discord threadId goes only with a channel: peer",
                                      field="threadId", code="INVALID_DISCORD_THREAD_ID")
    return Route(p, t, fields.account_id, peer, thread)


def _ms(ts: _dt.datetime) -> _dt.datetime:
    """Millisecond precision, as serialised: what is stored is exactly what is returned."""
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


def _seconds_to_dt(seconds: float) -> _dt.datetime:
    return from_millis(int(seconds * 1000))


def next_status(current: str, new: str, *, from_gateway: bool) -> str:
    """The status a delivery event takes when ``new`` is reported (see the module notes)."""
    rc, rn = STATUS_RANK[current], STATUS_RANK[new]
    if rn > rc:
        return new
    if rn == rc and from_gateway:
        return new
    return current


class ChannelService:
    def __init__(
        self,
        store: Store,
        clock: Clock = utc_now,
        *,
        ingress_idempotency_ttl_s: float = 3600,
        callback_idempotency_ttl_s: float = 3600,
        callback_configured: bool = False,
        ingress_routed_disposition: str = ROUTED,
    ) -> None:
        if ingress_routed_disposition not in ("ROUTED", "ACCEPTED"):
            raise ValueError("ingress_routed_disposition is ROUTED or ACCEPTED")
        self.store = store
        self.clock = clock
        self.ingress_ttl = float(ingress_idempotency_ttl_s)
        self.callback_ttl = float(callback_idempotency_ttl_s)
        self.callback_configured = callback_configured
        self.routed_word = ingress_routed_disposition
        #: Called (without arguments) after a reply was queued in the outbox: the worker's wake-up.
        self.outbox_listeners: list[Callable[[], None]] = []

    def _write(self, fn: Callable[[Transaction], T]) -> T:
        return transact(self.store, fn)

    def _now(self) -> _dt.datetime:
        return _ms(self.clock())

    # -- bindings (7.1) -------------------------------------------------------------------------
    @staticmethod
    def etag(record: Binding) -> str:
        return etag_of(codec.to_json(record))

    def upsert_binding(
        self, command: PutBinding, *, expected_etag: str | None = None
    ) -> tuple[Binding, bool]:
        """Create or replace the binding of a route: (binding, created)."""
        route = route_of(command)
        target = command.target_type
        if target not in CAPABILITIES[(route.provider, route.transport)]:
            raise ValidationError(
                f"a {route.provider}:{route.transport} route cannot target a {target}",
                field="targetType", code="UNSUPPORTED_TARGET",
            )
        member = command.target_member_name
        agent: str | None
        team: str | None
        if target == "AGENT":
            agent = _required(command.agent_id, "agentId")
            if command.team_id is not None:
                raise ValidationError("teamId is for TEAM targets only", field="teamId")
            if member is not None:
                raise ValidationError("targetMemberName is for TEAM targets only",
                                      field="targetMemberName")
            team = None
        else:
            team = _required(command.team_id, "teamId")
            if command.agent_id is not None:
                raise ValidationError("agentId is for AGENT targets only", field="agentId")
            agent = None

        def fn(txn: Transaction) -> tuple[Binding, bool]:
            now = self._now()
            existing = repository.binding_of_route(txn, route)
            if expected_etag is not None and (
                existing is None or self.etag(existing) != expected_etag
            ):
                raise PreconditionFailedError(
                    "the binding of this route has changed (ETag mismatch)", field="If-Match"
                )
            if existing is not None:
                b = attrs.evolve(existing, target_type=target, agent_id=agent, team_id=team,
                                 target_member_name=member, updated_at=now)
                repository.put_binding(txn, b)
                return b, False
            b = Binding(
                id=repository.BINDINGS.next_id(txn), route=route, target_type=target,
                agent_id=agent, team_id=team, target_member_name=member,
                created_at=now, updated_at=now,
            )
            repository.put_binding(txn, b)
            return b, True

        return self._write(fn)

    def get_binding(self, binding_id: str) -> Binding:
        with self.store.begin() as txn:
            b = repository.binding(txn, binding_id)
        if b is None:
            raise NotFoundError(f"channel binding {binding_id} does not exist", field="id")
        return b

    def binding_of_route(self, route: Route) -> Binding | None:
        with self.store.begin() as txn:
            return repository.binding_of_route(txn, route)

    def list_bindings(self, *, limit: Limit = None, cursor: str | None = None) -> Page[Binding]:
        n = check_limit(limit)
        with self.store.begin() as txn:
            items, nxt = repository.index_page(
                txn, repository.BINDINGS, "recent", limit=n, cursor=cursor
            )
        return Page(items, nxt)

    def delete_binding(self, binding_id: str, *, expected_etag: str | None = None) -> None:
        def fn(txn: Transaction) -> None:
            b = repository.binding(txn, binding_id)
            if b is None:
                raise NotFoundError(f"channel binding {binding_id} does not exist", field="id")
            if expected_etag is not None and self.etag(b) != expected_etag:
                raise PreconditionFailedError(
                    f"channel binding {binding_id} has changed (ETag mismatch)", field="If-Match"
                )
            repository.BINDINGS.delete(txn, binding_id)

        self._write(fn)

    # -- ingress (7.2, 7.3) ---------------------------------------------------------------------
    @staticmethod
    def envelope(message: InboundMessage) -> InboundEnvelope:
        return InboundEnvelope(
            route=route_of(message),
            peer_type=message.peer_type,
            external_message_id=message.external_message_id,
            content=message.content,
            attachments=message.attachments,
            received_at=_ms(message.received_at),
            metadata=message.metadata or {},
        )

    def ingest(self, message: InboundMessage) -> IngressResult:
        """Process one inbound message in one write transaction (see domains.md 7.3)."""
        env = self.envelope(message)
        key = env.idempotency_key

        def fn(txn: Transaction) -> IngressResult:
            now = self._now()
            b = repository.binding_of_route(txn, env.route)
            if b is None:
                # UNBOUND records the receipt but leaves the key free: the gateway's operator
                # binds the route and replays this very message, which must then be ROUTED.
                if repository.ingress_key_live(txn, key, now.timestamp()):
                    return IngressResult(DUPLICATE, key, None)  # routed before, since unbound
                self._record_receipt(txn, env, None, UNBOUND, now)
                return IngressResult(UNBOUND, key, None)
            if not repository.INGRESS_KEYS.reserve(txn, key, self.ingress_ttl,
                                                   now=now.timestamp()):
                return IngressResult(DUPLICATE, key, None)
            self._record_receipt(txn, env, b, ROUTED, now)
            self._enqueue_inbound(txn, env, b, now)
            return IngressResult(self.routed_word, key, b.id)

        return self._write(fn)

    def _record_receipt(
        self, txn: Transaction, env: InboundEnvelope, b: Binding | None, state: str,
        now: _dt.datetime,
    ) -> Receipt:
        agent = b.agent_id if b is not None else None
        team = b.team_id if b is not None else None
        existing = repository.receipt_of(txn, env.route, env.external_message_id)
        if existing is not None:
            r = attrs.evolve(
                existing, received_at=env.received_at, ingress_state=state,
                agent_id=existing.agent_id or agent, team_id=existing.team_id or team,
                updated_at=now,
            )
        else:
            r = Receipt(
                id=repository.RECEIPTS.next_id(txn), route=env.route,
                external_message_id=env.external_message_id, turn_id=None, agent_id=agent,
                team_id=team, received_at=env.received_at, ingress_state=state,
                created_at=now, updated_at=now,
            )
        repository.put_receipt(txn, r)
        return r

    def _enqueue_inbound(
        self, txn: Transaction, env: InboundEnvelope, b: Binding, now: _dt.datetime
    ) -> InboxMessage:
        route = env.route
        m = InboxMessage(
            id=repository.INBOX.next_id(txn),
            target_type=b.target_type,
            target_id=b.target_id,
            target_member_name=b.target_member_name,
            binding_id=b.id,
            content=env.content,
            attachments=env.attachments,
            metadata=env.metadata,
            external_source=ExternalSource(
                provider=route.provider, transport=route.transport,
                account_id=route.account_id, peer_id=route.peer_id, peer_type=env.peer_type,
                thread_id=route.thread_id or None,
                external_message_id=env.external_message_id,
                routing_key=route.routing_key, received_at=env.received_at,
            ),
            enqueued_at=now,
        )
        repository.append_inbox(txn, m)
        return m

    # -- inbox ----------------------------------------------------------------------------------
    def inbox(
        self, target: InboxTarget, *, limit: Limit = None, cursor: str | None = None
    ) -> Page[InboxMessage]:
        """The target's queued messages, oldest first."""
        tt, tid = target.target_type, target.target_id
        n = check_limit(limit)
        with self.store.begin() as txn:
            items, nxt = repository.index_page(
                txn, repository.INBOX, "target", (tt, tid), limit=n, cursor=cursor,
                keep=lambda m: m.target_type == tt and m.target_id == tid,
            )
        return Page(items, nxt)

    def ack(self, target: InboxTarget, command: AckMessages) -> int:
        """Remove acknowledged messages of this target; unknown or foreign ids are skipped."""
        tt, tid = target.target_type, target.target_id
        ids = list(dict.fromkeys(command.message_ids))

        def fn(txn: Transaction) -> int:
            n = 0
            for mid in ids:
                m = repository.inbox_message(txn, mid)
                if m is not None and m.target_type == tt and m.target_id == tid:
                    repository.INBOX.delete(txn, mid)
                    n += 1
            return n

        return self._write(fn)

    # -- receipts (7.4) -------------------------------------------------------------------------
    def bind_turn(self, command: BindTurn) -> Receipt:
        """Turn T (of agent A and/or team) answers message M: upsert M's receipt."""
        route = route_of(command)
        ext, turn = command.external_message_id, command.turn_id
        agent, team = command.agent_id, command.team_id
        if agent is None and team is None:
            raise ValidationError("agentId or teamId is required", field="agentId")

        def fn(txn: Transaction) -> Receipt:
            now = self._now()
            existing = repository.receipt_of(txn, route, ext)
            if existing is not None:
                r = attrs.evolve(existing, turn_id=turn, agent_id=agent or existing.agent_id,
                                 team_id=team or existing.team_id, updated_at=now)
            else:
                r = Receipt(
                    id=repository.RECEIPTS.next_id(txn), route=route, external_message_id=ext,
                    turn_id=turn, agent_id=agent, team_id=team, received_at=now,
                    ingress_state=None, created_at=now, updated_at=now,
                )
            repository.put_receipt(txn, r)
            return r

        return self._write(fn)

    def receipt(self, route: Route, external_message_id: str) -> Receipt | None:
        with self.store.begin() as txn:
            return repository.receipt_of(txn, route, external_message_id)

    def source_of_turn(self, agent_id: str, turn_id: str) -> Receipt | None:
        with self.store.begin() as txn:
            return repository.source_of_turn(txn, agent_id, turn_id)

    def latest_source_of_agent(self, agent_id: str) -> Receipt | None:
        with self.store.begin() as txn:
            return repository.latest_of_agent(txn, agent_id)

    def latest_source_of_team(self, team_id: str) -> Receipt | None:
        with self.store.begin() as txn:
            return repository.latest_of_team(txn, team_id)

    # -- delivery events (7.7) ------------------------------------------------------------------
    def record_delivery_event(self, report: DeliveryReport) -> DeliveryEvent:
        """A gateway's report on a reply; the status never moves backwards. Its key is
        ``metadata.callbackIdempotencyKey``, else ``correlationMessageId``; its error message
        ``errorMessage``, else a string ``metadata.errorMessage`` or ``metadata.error``."""
        route = route_of(report)
        new = report.status
        meta = dict(report.metadata or {})
        correlation_message_id = report.correlation_message_id
        key: str | None = meta.get("callbackIdempotencyKey")  # non-blank when given (shape)
        if key is None:
            if correlation_message_id is None or not correlation_message_id.strip():
                raise ValidationError(
                    "correlationMessageId is required when metadata.callbackIdempotencyKey is "
                    "absent", field="correlationMessageId",
                )
            key = correlation_message_id
        error_message = report.error_message
        if error_message is None:
            error_message = next((meta[name] for name in ("errorMessage", "error")
                                  if isinstance(meta.get(name), str)), None)

        def fn(txn: Transaction) -> DeliveryEvent:
            now = self._now()
            existing = repository.delivery_event(txn, key)
            if existing is None:
                e = DeliveryEvent(
                    id=repository.DELIVERY_EVENTS.next_id(txn), route=route,
                    correlation_message_id=correlation_message_id,
                    callback_idempotency_key=key, status=new,
                    error_message=error_message if new == FAILED else None, metadata=meta,
                    created_at=now, updated_at=now,
                )
                repository.put_delivery_event(txn, e)
                return e
            if next_status(existing.status, new, from_gateway=True) != new:
                return existing  # a late report: ignored
            e = attrs.evolve(
                existing, status=new,
                error_message=(error_message or existing.error_message) if new == FAILED
                else None,
                correlation_message_id=existing.correlation_message_id or correlation_message_id,
                metadata={**existing.metadata, **meta}, updated_at=now,
            )
            repository.put_delivery_event(txn, e)
            return e

        return self._write(fn)

    def delivery_event(self, callback_idempotency_key: str) -> DeliveryEvent:
        with self.store.begin() as txn:
            e = repository.delivery_event(txn, callback_idempotency_key)
        if e is None:
            raise NotFoundError(
                f"no delivery event for {callback_idempotency_key!r}",
                field="callbackIdempotencyKey",
            )
        return e

    # -- reply publishing (7.5) -----------------------------------------------------------------
    def publish_reply(self, command: PublishReply) -> ReplyResult:
        agent, turn_id, reply_text = command.agent_id, command.turn_id, command.reply_text
        if not turn_id or not turn_id.strip():
            return ReplyResult(False, "TURN_ID_MISSING", None)
        key = callback_key(agent, turn_id)
        if not reply_text or not reply_text.strip():
            return ReplyResult(False, "EMPTY_REPLY", key)
        if not self.callback_configured:
            return ReplyResult(False, "CALLBACK_NOT_CONFIGURED", key)

        def fn(txn: Transaction) -> ReplyResult:
            source = repository.source_of_turn(txn, agent, turn_id)
            if source is None:
                return ReplyResult(False, "SOURCE_NOT_FOUND", key)
            b = repository.binding_of_route(txn, source.route)
            if b is None or not _bound_to(b, agent, source):
                return ReplyResult(False, "BINDING_NOT_FOUND", key)
            now = self._now()
            if not repository.CALLBACK_KEYS.reserve(txn, key, self.callback_ttl,
                                                    now=now.timestamp()):
                return ReplyResult(False, "DUPLICATE", key)
            route = source.route
            envelope = {
                **codec.route_json(route),
                "correlationMessageId": source.external_message_id,
                "callbackIdempotencyKey": key,
                "replyText": reply_text,
                "attachments": [],
                "chunks": [],
                "metadata": {"turnId": turn_id},
            }
            event = repository.delivery_event(txn, key)
            if event is None:
                event = DeliveryEvent(
                    id=repository.DELIVERY_EVENTS.next_id(txn), route=route,
                    correlation_message_id=source.external_message_id,
                    callback_idempotency_key=key, status=PENDING, error_message=None,
                    metadata={"turnId": turn_id, "agentId": agent}, created_at=now,
                    updated_at=now,
                )
                repository.put_delivery_event(txn, event)
            elif event.status == FAILED:
                repository.put_delivery_event(txn, attrs.evolve(
                    event, status=PENDING, error_message=None, updated_at=now))
            repository.put_outbox(txn, OutboxEntry(
                id=repository.OUTBOX.next_id(txn), callback_idempotency_key=key,
                envelope=envelope, status=OUTBOX_PENDING, attempts=0, due_at=now,
                lease_owner=None, last_error=None, created_at=now, updated_at=now,
            ))
            return ReplyResult(True, None, key)

        result = self._write(fn)
        if result.published:
            self._notify_outbox()
        return result

    def _notify_outbox(self) -> None:
        for listener in list(self.outbox_listeners):
            try:
                listener()
            except Exception:  # a wake-up is an optimisation; the worker polls anyway
                log.exception("outbox listener failed")

    # -- outbox (7.6): what the worker does, and the operators' view ----------------------------
    def list_outbox(
        self, *, status: str | None = None, limit: Limit = None, cursor: str | None = None
    ) -> Page[OutboxEntry]:
        """Outbox entries newest first, all or of one status (one of OUTBOX_STATUSES, as
        commands.OUTBOX_STATUS checks it)."""
        n = check_limit(limit)
        with self.store.begin() as txn:
            if status is not None:
                word = status
                items, nxt = repository.index_page(
                    txn, repository.OUTBOX, "status", (word,), limit=n, cursor=cursor,
                    keep=lambda o: o.status == word, reverse=True,
                )
                return Page(items, nxt)
            after = decode_cursor(cursor)
            if after is not None and not (isinstance(after, str) and after.isdigit()):
                raise ValidationError("cursor is not one this list issued", field="cursor")
            rows = list(repository.OUTBOX.scan(txn, after=after, limit=n + 1, reverse=True))
            entries = [repository.OUTBOX.decode(raw) for _, raw in rows[:n]]
            more = len(rows) > n
        return Page(entries, encode_cursor(entries[-1].id) if more and entries else None)

    def outbox_summary(self) -> OutboxSummary:
        """Entries per state and the age of the oldest one still to be delivered."""
        with self.store.begin() as txn:
            counts = repository.outbox_counts(txn)
            oldest = repository.oldest_unfinished(txn)
        now = self._now()
        if oldest is None:
            return OutboxSummary(counts, None, None, now)
        age = max(0.0, (now - oldest.created_at).total_seconds())
        return OutboxSummary(counts, oldest.created_at, age, now)

    def retry_dead_letter(self, entry_id: str) -> OutboxEntry:
        """Put a DEAD_LETTER entry back to PENDING with a fresh attempt budget (its last error is
        kept for the record), and its FAILED delivery event back to PENDING. Any other state is
        a conflict: a live entry is already on its way, a SENT one arrived."""
        def fn(txn: Transaction) -> OutboxEntry:
            o = repository.outbox_entry(txn, entry_id)
            if o is None:
                raise NotFoundError(f"outbox entry {entry_id} does not exist", field="id")
            if o.status != DEAD_LETTER:
                raise ConflictError(
                    f"outbox entry {entry_id} is {o.status}; only a DEAD_LETTER entry can be "
                    "put back", field="status",
                )
            now = self._now()
            event = repository.delivery_event(txn, o.callback_idempotency_key)
            if event is not None and event.status == FAILED:
                repository.put_delivery_event(txn, attrs.evolve(
                    event, status=PENDING, error_message=None, updated_at=now))
            back = attrs.evolve(o, status=OUTBOX_PENDING, attempts=0, due_at=now,
                                lease_owner=None, updated_at=now)
            repository.put_outbox(txn, back)
            return back

        entry = self._write(fn)
        self._notify_outbox()
        return entry

    def outbox_entry(self, entry_id: str) -> OutboxEntry:
        with self.store.begin() as txn:
            o = repository.outbox_entry(txn, entry_id)
        if o is None:
            raise NotFoundError(f"outbox entry {entry_id} does not exist", field="id")
        return o

    def lease_due(self, owner: str, *, now: float, lease_s: float, limit: int
                  ) -> list[OutboxEntry]:
        """Lease up to ``limit`` entries that are due at ``now`` (epoch seconds): PENDING and
        FAILED_RETRY whose attempt time came, and DISPATCHING whose lease expired. Each lease
        counts one attempt."""
        def fn(txn: Transaction) -> tuple[list[OutboxEntry], list[OutboxEntry]]:
            now_dt = _seconds_to_dt(now)
            until = _seconds_to_dt(now + lease_s)
            leased, expired = [], []
            for o in list(repository.due_outbox(txn, to_millis(now_dt), limit)):
                if o.status not in (OUTBOX_PENDING, FAILED_RETRY, DISPATCHING):
                    continue
                if o.status == DISPATCHING:
                    expired.append(o)
                taken = attrs.evolve(o, status=DISPATCHING, attempts=o.attempts + 1,
                                     due_at=until, lease_owner=owner, updated_at=now_dt)
                repository.put_outbox(txn, taken)
                leased.append(taken)
            return leased, expired

        leased, expired = self._write(fn)
        # Logged once committed: fn may run again after a conflict.
        for o in expired:
            log.warning("outbox entry %s: lease of %s expired; taking it over", o.id, o.lease_owner)
        return leased

    def next_due(self) -> float | None:
        """When the earliest entry becomes due (epoch seconds), or None when nothing waits."""
        with self.store.begin() as txn:
            ms = repository.next_due_ms(txn)
        return None if ms is None else ms / 1000

    def _finish(self, entry_id: str, owner: str, now: float,
                change: Callable[[Transaction, OutboxEntry, _dt.datetime], OutboxEntry]) -> bool:
        def fn(txn: Transaction) -> bool:
            o = repository.outbox_entry(txn, entry_id)
            if o is None or o.status != DISPATCHING or o.lease_owner != owner:
                return False  # the lease was lost (expired and taken over): not ours to record
            repository.put_outbox(txn, change(txn, o, _seconds_to_dt(now)))
            return True

        return self._write(fn)

    def _advance_event(self, txn: Transaction, key: str, status: str, error: str | None,
                       now: _dt.datetime) -> None:
        e = repository.delivery_event(txn, key)
        if e is None or next_status(e.status, status, from_gateway=False) != status:
            return
        repository.put_delivery_event(txn, attrs.evolve(
            e, status=status, error_message=error if status == FAILED else None,
            updated_at=now))

    def mark_sent(self, entry_id: str, owner: str, *, now: float) -> bool:
        def change(txn: Transaction, o: OutboxEntry, at: _dt.datetime) -> OutboxEntry:
            self._advance_event(txn, o.callback_idempotency_key, SENT, None, at)
            return attrs.evolve(o, status=OUTBOX_SENT, due_at=None, lease_owner=None,
                                last_error=None, updated_at=at)

        return self._finish(entry_id, owner, now, change)

    def mark_retry(self, entry_id: str, owner: str, *, now: float, error: str,
                   retry_at: float) -> bool:
        def change(txn: Transaction, o: OutboxEntry, at: _dt.datetime) -> OutboxEntry:
            return attrs.evolve(o, status=FAILED_RETRY, due_at=_seconds_to_dt(retry_at),
                                lease_owner=None, last_error=error, updated_at=at)

        return self._finish(entry_id, owner, now, change)

    def release_lease(self, entry_id: str, owner: str, *, now: float) -> bool:
        """Give back a leased entry that was not attempted (the worker is stopping)."""
        def change(txn: Transaction, o: OutboxEntry, at: _dt.datetime) -> OutboxEntry:
            return attrs.evolve(
                o, status=OUTBOX_PENDING if o.last_error is None else FAILED_RETRY,
                attempts=max(0, o.attempts - 1), due_at=at, lease_owner=None, updated_at=at,
            )

        return self._finish(entry_id, owner, now, change)

    def mark_dead(self, entry_id: str, owner: str, *, now: float, error: str) -> bool:
        def change(txn: Transaction, o: OutboxEntry, at: _dt.datetime) -> OutboxEntry:
            self._advance_event(txn, o.callback_idempotency_key, FAILED, error, at)
            return attrs.evolve(o, status=DEAD_LETTER, due_at=None, lease_owner=None,
                                last_error=error, updated_at=at)

        return self._finish(entry_id, owner, now, change)


def _required(value: str | None, field: str) -> str:
    if value is None:
        raise ValidationError(f"{field} is required and must be a non-blank string", field=field)
    return value


def _bound_to(b: Binding, agent_id: str, source: Receipt) -> bool:
    if b.target_type == "AGENT":
        return b.agent_id == agent_id
    return source.team_id is not None and b.team_id == source.team_id
