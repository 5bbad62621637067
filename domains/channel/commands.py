"""What a gateway, an agent runtime or an operator may send to the external channel: the request
shapes (see domains/shapes), each declared once; checking and the OpenAPI schemas come from them.

Enums are matched trimmed and regardless of case (``" whatsapp "`` is ``WHATSAPP``), from the one
declaration in models.py. Ids are kept exactly as given and must not be blank; an optional id
given blank counts as absent. The two ingress bodies (:class:`InboundMessage`,
:class:`DeliveryReport`) and attachments ignore fields they do not know (domains.md 7.3); every
other body refuses them.

Rules that relate fields to each other are checked by the service (service.py): the provider x
transport pairs and the targets each can bind (models.CAPABILITIES), Discord peer and thread
ids, which target fields go with a targetType, agentId or teamId on a turn binding, and the
delivery event's key (``metadata.callbackIdempotencyKey``, else ``correlationMessageId``). Each
shape states them in its ``RELATIONS`` (domains.shapes.description.relations), built below from
the same declarations, so that its JSON Schema says exactly what the service accepts.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, ClassVar

import attrs

from domains.channel.models import (
    CAPABILITIES,
    DELIVERY_STATUSES,
    DISCORD_CHANNEL_PEER,
    DISCORD_PEER,
    DISCORD_THREAD,
    OUTBOX_STATUSES,
    PEER_TYPES,
    PROVIDERS,
    TARGET_TYPES,
    TRANSPORTS,
    Attachment,
)
from domains.shapes import (
    BLANK_PATTERN,
    NON_BLANK_PATTERN,
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

# -- the rules between fields, as JSON Schema (each shape's RELATIONS) ----------------------------
#: An optional id that counts as absent: not given, null, or blank.
_NO_ID: dict[str, Any] = {"anyOf": [{"type": "null"}, {"type": "string", "pattern": BLANK_PATTERN}]}
#: An optional id that is given: a non-blank string.
_ID: dict[str, Any] = {"type": "string", "pattern": NON_BLANK_PATTERN}


def _regex(pattern: str) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern}


def _case(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"properties": properties}
    if required:
        out["required"] = list(required)
    return out


#: A Discord route's ids (service.route_of): a user:/channel: peer and no thread, or a channel:
#: peer and a thread of digits.
_DISCORD_IDS: dict[str, Any] = {"anyOf": [
    _case({"peerId": _regex(DISCORD_PEER.pattern), "threadId": _NO_ID}),
    _case({"peerId": _regex(DISCORD_CHANNEL_PEER.pattern),
           "threadId": _regex(DISCORD_THREAD.pattern)}, ("threadId",)),
]}

#: What each targetType needs (service.upsert_binding): AGENT an agentId and no team fields,
#: TEAM a teamId and no agentId (a targetMemberName optional).
_TARGET_FIELDS: dict[str, dict[str, Any]] = {
    "AGENT": _case({"agentId": _ID, "teamId": _NO_ID, "targetMemberName": _NO_ID}, ("agentId",)),
    "TEAM": _case({"teamId": _ID, "agentId": _NO_ID}, ("teamId",)),
}


def _route_cases(*, with_targets: bool) -> dict[str, Any]:
    """The routes a body may name: one case per provider x transport pair of CAPABILITIES (and,
    ``with_targets``, per target that pair can bind, with that target's fields), a Discord
    route's ids in its case."""
    cases: list[dict[str, Any]] = []
    for (provider, transport), targets in CAPABILITIES.items():
        pair: dict[str, Any] = {
            "provider": attrs.evolve(PROVIDER, values=(provider,)).schema(),
            "transport": attrs.evolve(TRANSPORT, values=(transport,)).schema(),
        }
        both = [_DISCORD_IDS] if provider == "DISCORD" else []
        if not with_targets:
            cases.append({**_case(pair), **({"allOf": both} if both else {})})
            continue
        for target in targets:
            fields = _TARGET_FIELDS[target]
            cases.append({
                "properties": {**pair, "targetType": attrs.evolve(
                    TARGET_TYPE, values=(target,)).schema()},
                "allOf": [*both, fields],
            })
    return {"anyOf": cases}


#: Only the pairs of CAPABILITIES; a Discord route's ids.
ROUTE_RULES = _route_cases(with_targets=False)
#: ... and the targets each pair can bind, with the fields each target needs.
BINDING_RULES = _route_cases(with_targets=True)
#: A turn binding names an agentId or a teamId (or both).
AGENT_OR_TEAM = {"anyOf": [_case({"agentId": _ID}, ("agentId",)),
                           _case({"teamId": _ID}, ("teamId",))]}
#: A delivery event's key: metadata.callbackIdempotencyKey, else a non-blank correlationMessageId.
EVENT_KEY = {"anyOf": [
    _case({"metadata": {"type": "object", "required": ["callbackIdempotencyKey"]}},
          ("metadata",)),
    _case({"correlationMessageId": _ID}, ("correlationMessageId",)),
]}


@attrs.frozen(kw_only=True)
class RouteFields:
    """The five fields that name a conversation (flattened into the bodies that carry one)."""

    RELATIONS: ClassVar[tuple[dict[str, Any], ...]] = (ROUTE_RULES,)

    provider: str = wire(PROVIDER)
    transport: str = wire(TRANSPORT)
    account_id: str = wire(Text())
    peer_id: str = wire(Text())
    thread_id: str | None = wire(OPTIONAL_ID, default=None)


@attrs.frozen(kw_only=True)
class PutBinding(RouteFields):
    """The binding of a route to an AGENT (``agentId``) or a TEAM (``teamId``, optionally a
    ``targetMemberName``)."""

    RELATIONS: ClassVar[tuple[dict[str, Any], ...]] = (BINDING_RULES,)

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

    RELATIONS: ClassVar[tuple[dict[str, Any], ...]] = (ROUTE_RULES, EVENT_KEY)

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

    RELATIONS: ClassVar[tuple[dict[str, Any], ...]] = (ROUTE_RULES, AGENT_OR_TEAM)

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
