"""External-channel records (domains.md section 7): plain attrs classes and pure rules, no I/O."""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any, ClassVar

import attrs

from domains.shapes import Choice, Integer, JsonObject, OptionalText, Rule, Text, wire
from domains.shapes.rules import RULE_KEY

PROVIDERS = ("WHATSAPP", "WECOM", "WECHAT", "DISCORD", "TELEGRAM")
TRANSPORTS = ("BUSINESS_API", "PERSONAL_SESSION")
PEER_TYPES = ("USER", "GROUP", "CHANNEL")
TARGET_TYPES = ("AGENT", "TEAM")
# What a route of each accepted provider x transport pair can target: the one declaration that
# binding validation enforces and GET /rest/api/channel-capabilities answers (in this order).
CAPABILITIES: dict[tuple[str, str], tuple[str, ...]] = {
    ("WHATSAPP", "BUSINESS_API"): ("AGENT", "TEAM"),
    ("WHATSAPP", "PERSONAL_SESSION"): ("AGENT", "TEAM"),
    ("WECOM", "BUSINESS_API"): ("AGENT", "TEAM"),
    ("WECHAT", "PERSONAL_SESSION"): ("AGENT", "TEAM"),
    ("DISCORD", "BUSINESS_API"): ("AGENT", "TEAM"),
    ("TELEGRAM", "BUSINESS_API"): ("AGENT",),
}
ALLOWED_PAIRS = frozenset(CAPABILITIES)
# Discord ids, matched whole (``fullmatch``: a trailing newline is refused, as JSON Schema's
# ECMA-262 ``$`` does); the patterns are also the schemas' (commands.py).
DISCORD_PEER = re.compile(r"^(user|channel):[0-9]+$")
#: The peer a Discord thread belongs to.
DISCORD_CHANNEL_PEER = re.compile(r"^channel:[0-9]+$")
DISCORD_THREAD = re.compile(r"^[0-9]+$")

# Ingress outcomes (the answer's ``disposition``; ROUTED may be spelled ACCEPTED by a setting).
ROUTED = "ROUTED"
UNBOUND = "UNBOUND"
DUPLICATE = "DUPLICATE"

# Why a reply was not queued (the answer's ``reason``), in the order the service checks.
REPLY_REASONS = ("TURN_ID_MISSING", "EMPTY_REPLY", "CALLBACK_NOT_CONFIGURED", "SOURCE_NOT_FOUND",
                 "BINDING_NOT_FOUND", "DUPLICATE")

# Delivery-event statuses. A status never moves to a lower rank; SENT and FAILED share a rank so
# that the gateway may report a retry's outcome either way (see service.DeliveryEvents).
PENDING = "PENDING"
SENT = "SENT"
DELIVERED = "DELIVERED"
FAILED = "FAILED"
DELIVERY_STATUSES = (PENDING, SENT, DELIVERED, FAILED)
STATUS_RANK = {PENDING: 0, SENT: 1, FAILED: 1, DELIVERED: 2}

# Outbox states.
OUTBOX_PENDING = "PENDING"
DISPATCHING = "DISPATCHING"
OUTBOX_SENT = "SENT"
FAILED_RETRY = "FAILED_RETRY"
DEAD_LETTER = "DEAD_LETTER"
OUTBOX_STATUSES = (OUTBOX_PENDING, DISPATCHING, OUTBOX_SENT, FAILED_RETRY, DEAD_LETTER)


def _enum(values: tuple[str, ...], nullable: bool = False) -> dict[str, Rule]:
    """The metadata of a record field that holds one of ``values``: the answer schemas say so."""
    return {RULE_KEY: Choice(values, nullable=nullable)}


@attrs.frozen
class Route:
    """Where a conversation lives: a missing thread is stored as ``""`` (returned as null)."""

    provider: str
    transport: str
    account_id: str
    peer_id: str
    thread_id: str = ""

    @property
    def routing_key(self) -> str:
        return ":".join(
            (self.provider, self.transport, self.account_id, self.peer_id,
             self.thread_id or "direct")
        )

    def as_tuple(self) -> tuple[str, str, str, str, str]:
        return (self.provider, self.transport, self.account_id, self.peer_id, self.thread_id)


@attrs.frozen
class Binding:
    id: str
    route: Route
    target_type: str = attrs.field(metadata=_enum(TARGET_TYPES))
    agent_id: str | None
    team_id: str | None
    target_member_name: str | None
    created_at: _dt.datetime
    updated_at: _dt.datetime

    @property
    def target_id(self) -> str:
        return (self.agent_id if self.target_type == "AGENT" else self.team_id) or ""


@attrs.frozen(kw_only=True)
class Attachment:
    """An attachment of an inbound message: stored as the gateway sent it, and itself the shape
    that checks it (fields the gateway adds are ignored)."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    kind: str = wire(Text())
    url: str = wire(Text())
    mime_type: str | None = wire(OptionalText(), default=None)
    file_name: str | None = wire(OptionalText(), default=None)
    size_bytes: int | None = wire(Integer(minimum=0, nullable=True), default=None)
    metadata: dict[str, Any] | None = wire(JsonObject(), default=None)


@attrs.frozen
class InboundEnvelope:
    """A parsed ingress message (the gateway's envelope, normalised)."""

    route: Route
    peer_type: str
    external_message_id: str
    content: str
    attachments: list[Attachment]
    received_at: _dt.datetime
    metadata: dict[str, Any]

    @property
    def idempotency_key(self) -> str:
        return f"{self.route.routing_key}::{self.external_message_id}"


@attrs.frozen
class Receipt:
    """One inbound message's record, unique per (route, externalMessageId).

    ``ingress_state`` is None while only the agent runtime's turn binding has been seen (the
    binding may arrive before the message; ingress fills it in).
    """

    id: str
    route: Route
    external_message_id: str
    turn_id: str | None
    agent_id: str | None
    team_id: str | None
    received_at: _dt.datetime
    ingress_state: str | None = attrs.field(metadata=_enum((ROUTED, UNBOUND), nullable=True))
    created_at: _dt.datetime
    updated_at: _dt.datetime


@attrs.frozen
class ExternalSource:
    """The external-source metadata that travels with a queued message."""

    provider: str = attrs.field(metadata=_enum(PROVIDERS))
    transport: str = attrs.field(metadata=_enum(TRANSPORTS))
    account_id: str
    peer_id: str
    peer_type: str = attrs.field(metadata=_enum(PEER_TYPES))
    thread_id: str | None
    external_message_id: str
    routing_key: str
    received_at: _dt.datetime


@attrs.frozen
class InboxMessage:
    """A routed message waiting in its target's durable inbox until acknowledged."""

    id: str
    target_type: str = attrs.field(metadata=_enum(TARGET_TYPES))
    target_id: str
    target_member_name: str | None
    binding_id: str
    content: str
    attachments: list[Attachment]
    metadata: dict[str, Any]
    external_source: ExternalSource
    enqueued_at: _dt.datetime


@attrs.frozen
class DeliveryEvent:
    id: str
    route: Route
    correlation_message_id: str | None
    callback_idempotency_key: str
    status: str = attrs.field(metadata=_enum(DELIVERY_STATUSES))
    error_message: str | None
    metadata: dict[str, Any]
    created_at: _dt.datetime
    updated_at: _dt.datetime


@attrs.frozen
class OutboxEntry:
    """An outbound reply envelope and its delivery state.

    ``due_at`` is when the worker may next take it: the next attempt for PENDING and
    FAILED_RETRY, the lease's expiry for DISPATCHING (a lease that expired is taken over), None
    once SENT or DEAD_LETTER.
    """

    id: str
    callback_idempotency_key: str
    envelope: dict[str, Any]
    status: str = attrs.field(metadata=_enum(OUTBOX_STATUSES))
    attempts: int
    due_at: _dt.datetime | None
    lease_owner: str | None
    last_error: str | None
    created_at: _dt.datetime
    updated_at: _dt.datetime


@attrs.frozen
class OutboxSummary:
    """The outbox at a glance: entries per state, and the oldest one still to be delivered
    (PENDING, FAILED_RETRY or DISPATCHING) with its age at ``as_of``."""

    counts: dict[str, int]
    oldest_pending_created_at: _dt.datetime | None
    oldest_pending_age_seconds: float | None
    as_of: _dt.datetime


@attrs.frozen
class IngressResult:
    disposition: str  # ROUTED | UNBOUND | DUPLICATE (the answer may spell ROUTED differently)
    idempotency_key: str
    binding_id: str | None

    @property
    def duplicate(self) -> bool:
        return self.disposition == DUPLICATE

    @property
    def binding_resolved(self) -> bool:
        return self.binding_id is not None


@attrs.frozen
class ReplyResult:
    published: bool
    reason: str | None
    callback_idempotency_key: str | None


def callback_key(agent_id: str, turn_id: str) -> str:
    return f"external-reply:{agent_id}:{turn_id}"
