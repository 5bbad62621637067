"""What a gateway, an agent runtime or an operator may send to the external channel: the request
shapes (see domains/shapes), each declared once; checking and the OpenAPI schemas come from them.

Enums are matched trimmed and regardless of case (``" whatsapp "`` is ``WHATSAPP``), from the one
declaration in models.py. Ids are kept exactly as given and must not be blank; an optional id
given blank counts as absent. The two ingress bodies (:class:`InboundMessage`,
:class:`DeliveryReport`) and attachments ignore fields they do not know (domains.md 7.3); every
other body refuses them.

Rules that relate fields to each other stay the service's (service.py): the provider x
transport pairs and the targets each can bind (models.CAPABILITIES), Discord peer and thread
ids, which target fields go with a targetType, agentId or teamId on a turn binding, and the
delivery event's key (``metadata.callbackIdempotencyKey``, else ``correlationMessageId``).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, ClassVar

import attrs

from domains.channel.models import (
    DELIVERY_STATUSES,
    OUTBOX_STATUSES,
    PEER_TYPES,
    PROVIDERS,
    TARGET_TYPES,
    TRANSPORTS,
    Attachment,
)
from domains.shapes import (
    Choice,
    JsonObject,
    Many,
    OptionalText,
    Text,
    TextList,
    Timestamp,
    wire,
)


def _blank_is_none(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None


def _none_is_empty(value: str | None) -> str:
    return "" if value is None else value


PROVIDER = Choice(PROVIDERS, case_insensitive=True)
TRANSPORT = Choice(TRANSPORTS, case_insensitive=True)
PEER_TYPE = Choice(PEER_TYPES, case_insensitive=True)
TARGET_TYPE = Choice(TARGET_TYPES, case_insensitive=True)
DELIVERY_STATUS = Choice(DELIVERY_STATUSES, case_insensitive=True)
#: ?status= of the operators' outbox list.
OUTBOX_STATUS = Choice(OUTBOX_STATUSES, case_insensitive=True)
#: An optional id: a string or null, blank counting as absent (None).
OPTIONAL_ID = OptionalText(normalise=_blank_is_none)
MAX_ACK_IDS = 1000


@attrs.frozen(kw_only=True)
class RouteFields:
    """The five fields that name a conversation (flattened into the bodies that carry one)."""

    provider: str = wire(PROVIDER)
    transport: str = wire(TRANSPORT)
    account_id: str = wire(Text())
    peer_id: str = wire(Text())
    thread_id: str | None = wire(OPTIONAL_ID, default=None)


@attrs.frozen(kw_only=True)
class PutBinding(RouteFields):
    """The binding of a route to an AGENT (``agentId``) or a TEAM (``teamId``, optionally a
    ``targetMemberName``)."""

    target_type: str = wire(TARGET_TYPE)
    agent_id: str | None = wire(OPTIONAL_ID, default=None)
    team_id: str | None = wire(OPTIONAL_ID, default=None)
    target_member_name: str | None = wire(OPTIONAL_ID, default=None)


@attrs.frozen(kw_only=True)
class InboundMessage(RouteFields):
    """An inbound message, as the gateway sends it (``routingKey`` among the fields ignored).
    A null or absent ``content`` is ``""``."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    peer_type: str = wire(PEER_TYPE)
    external_message_id: str = wire(Text())
    content: str = wire(OptionalText(normalise=_none_is_empty), default="")
    attachments: list[Attachment] = wire(Many(Attachment), default=attrs.Factory(list))
    received_at: _dt.datetime = wire(Timestamp(utc_only=True))
    metadata: dict[str, Any] | None = wire(JsonObject(), default=None)


@attrs.frozen(kw_only=True)
class DeliveryReport(RouteFields):
    """A gateway's report on a reply it was sent. Its key is ``metadata.callbackIdempotencyKey``,
    else ``correlationMessageId`` (one of them is required: the service's rule)."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    correlation_message_id: str | None = wire(OptionalText(), default=None)
    status: str = wire(DELIVERY_STATUS)
    error_message: str | None = wire(OptionalText(), default=None)
    metadata: dict[str, Any] | None = wire(
        JsonObject(known={"callbackIdempotencyKey": Text()}), default=None)


@attrs.frozen(kw_only=True)
class BindTurn(RouteFields):
    """Turn ``turnId`` of an agent (and/or a team: one of them is required) answers message
    ``externalMessageId`` of the route."""

    external_message_id: str = wire(Text())
    turn_id: str = wire(Text())
    agent_id: str | None = wire(OPTIONAL_ID, default=None)
    team_id: str | None = wire(OPTIONAL_ID, default=None)


@attrs.frozen(kw_only=True)
class PublishReply:
    """An agent's reply to a turn. A missing turn or a blank text are answers (``reason``), not
    errors; only ``agentId`` is required."""

    agent_id: str = wire(Text())
    turn_id: str | None = wire(OptionalText(), default=None)
    reply_text: str | None = wire(OptionalText(), default=None)


@attrs.frozen(kw_only=True)
class AckMessages:
    """Inbox message ids to acknowledge (unknown or foreign ids are skipped)."""

    message_ids: list[str] = wire(TextList(required=True, max_items=MAX_ACK_IDS))


@attrs.frozen(kw_only=True)
class InboxTarget:
    """The AGENT or TEAM whose inbox a path names (``/channel-inbox/{targetType}/{targetId}``)."""

    target_type: str = wire(TARGET_TYPE)
    target_id: str = wire(Text())
