"""The external-channel codec: the one place where channel records become JSON or bytes, and where
request bodies are checked for shape (types, presence). The channel rules themselves (enums,
provider:transport pairs, Discord ids, targets) are the service's.

JSON is camelCase with ISO-8601 millisecond ``Z`` timestamps; a route is flattened into its five
fields, with a stored thread of ``""`` shown as null. Stored bytes are that JSON plus a format
version, ``{"v": 1, ...}``; :func:`from_bytes` upgrades older versions on read.

The two ingress bodies (:func:`parse_envelope`, :func:`parse_delivery_event`) ignore fields they do
not know (domains.md 7.3); every other body rejects them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from domains.channel.models import (
    CAPABILITIES,
    FAILED_RETRY,
    OUTBOX_PENDING,
    Attachment,
    Binding,
    DeliveryEvent,
    ExternalSource,
    InboxMessage,
    OutboxEntry,
    OutboxSummary,
    Receipt,
    Route,
)
from domains.codec_support import RecordFormatError as RecordFormatError
from domains.codec_support import (
    camel,
    dump_envelope,
    load_envelope,
    make_converter,
)
from domains.common import (
    format_timestamp,
    parse_timestamp,
    reject_unknown_fields,
    require_object,
)
from domains.errors import ValidationError

T = TypeVar("T")
FORMAT_VERSION = 1

_ROUTE_FIELDS = ("provider", "transport", "accountId", "peerId", "threadId")




converter = make_converter()


def _register(cls: type) -> None:
    renames = {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}
    unstructure: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(
        cls, converter, **renames  # type: ignore[arg-type]
    )
    structure: Callable[[Any, Any], Any] = make_dict_structure_fn(
        cls, converter, **renames  # type: ignore[arg-type]
    )
    if "route" not in attrs.fields_dict(cls):
        converter.register_unstructure_hook(cls, unstructure)
        converter.register_structure_hook(cls, structure)
        return

    def flat_unstructure(obj: Any) -> dict[str, Any]:
        doc = unstructure(obj)
        route = doc.pop("route")
        return {"id": doc.pop("id"), **route, **doc}

    def flat_structure(doc: Mapping[str, Any], _: Any) -> Any:
        doc = dict(doc)
        doc["route"] = {name: doc.pop(name, None) for name in _ROUTE_FIELDS}
        return structure(doc, cls)

    converter.register_unstructure_hook(cls, flat_unstructure)
    converter.register_structure_hook(cls, flat_structure)


def _route_unstructure(route: Route) -> dict[str, Any]:
    return {
        "provider": route.provider,
        "transport": route.transport,
        "accountId": route.account_id,
        "peerId": route.peer_id,
        "threadId": route.thread_id or None,
    }


def _route_structure(doc: Mapping[str, Any], _: Any) -> Route:
    return Route(doc["provider"], doc["transport"], doc["accountId"], doc["peerId"],
                 doc.get("threadId") or "")


converter.register_unstructure_hook(Route, _route_unstructure)
converter.register_structure_hook(Route, _route_structure)
for _cls in (Attachment, ExternalSource, Binding, Receipt, InboxMessage, DeliveryEvent,
             OutboxEntry):
    _register(_cls)

#: Upgrades of stored documents, per record type: version n -> a function to version n+1.
_UPGRADES: dict[type, dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}


# -- records ------------------------------------------------------------------------------------
def to_json(record: Any) -> dict[str, Any]:
    return converter.unstructure(record, type(record))


def route_json(route: Route) -> dict[str, Any]:
    return _route_unstructure(route)


# -- answers of the operators' routes -----------------------------------------------------------
def outbox_entry_json(entry: OutboxEntry) -> dict[str, Any]:
    """An outbox entry as operators see it: the record plus ``nextAttemptAt`` (its ``dueAt``
    while it waits for an attempt, null while leased, sent or dead)."""
    doc = to_json(entry)
    waiting = entry.status in (OUTBOX_PENDING, FAILED_RETRY)
    doc["nextAttemptAt"] = doc["dueAt"] if waiting else None
    return doc


def outbox_summary_json(summary: OutboxSummary) -> dict[str, Any]:
    oldest = summary.oldest_pending_created_at
    return {
        "counts": dict(summary.counts),
        "oldestPendingCreatedAt": None if oldest is None else format_timestamp(oldest),
        "oldestPendingAgeSeconds": None if summary.oldest_pending_age_seconds is None
        else round(summary.oldest_pending_age_seconds, 3),
        "asOf": format_timestamp(summary.as_of),
    }


def capabilities_json() -> dict[str, Any]:
    """The accepted provider x transport pairs and their targets, from the declaration that
    binding validation enforces (models.CAPABILITIES)."""
    items = [{"provider": p, "transport": t, "targetTypes": list(targets)}
             for (p, t), targets in CAPABILITIES.items()]
    return {"items": items, "nextCursor": None}


def unverified_route(payload: Any) -> str | None:
    """The routing key a body names, for a log line about a request that failed its signature
    check (so not trusted): None unless the route's four required fields are strings."""
    if not isinstance(payload, dict):
        return None
    parts = [payload.get(name) for name in _ROUTE_FIELDS]
    if not all(isinstance(v, str) for v in parts[:4]):
        return None
    thread = parts[4] if isinstance(parts[4], str) and parts[4] else "direct"
    return ":".join([*parts[:4], thread])  # type: ignore[list-item]


def to_bytes(record: Any) -> bytes:
    return dump_envelope(to_json(record), FORMAT_VERSION)


def from_bytes(cls: type[T], raw: bytes) -> T:
    doc = load_envelope(raw, cls.__name__, FORMAT_VERSION, _UPGRADES.get(cls, {}))
    return converter.structure(doc, cls)


def decoder(cls: type[T]) -> Callable[[bytes], T]:
    return lambda raw: from_bytes(cls, raw)


# -- shape helpers ------------------------------------------------------------------------------
def _text(body: Mapping[str, Any], field: str, *, required: bool) -> str | None:
    """A string field; None when absent or null (400 when required), 400 when not a string."""
    value = body.get(field)
    if value is None:
        if required:
            raise ValidationError(f"{field} is required", field=field)
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field=field)
    if required and not value.strip():
        raise ValidationError(f"{field} must not be blank", field=field)
    return value


def _object(body: Mapping[str, Any], field: str) -> dict[str, Any] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be a JSON object", field=field)
    return value


def _route_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "provider": _text(body, "provider", required=True),
        "transport": _text(body, "transport", required=True),
        "account_id": _text(body, "accountId", required=True),
        "peer_id": _text(body, "peerId", required=True),
        "thread_id": _text(body, "threadId", required=False),
    }


# -- request bodies -----------------------------------------------------------------------------
BINDING_FIELDS = (*_ROUTE_FIELDS, "targetType", "agentId", "teamId", "targetMemberName")
TURN_FIELDS = (*_ROUTE_FIELDS, "externalMessageId", "turnId", "agentId", "teamId")
REPLY_FIELDS = ("agentId", "turnId", "replyText")
ACK_FIELDS = ("messageIds",)
MAX_ACK_IDS = 1000


def parse_binding(payload: Any) -> dict[str, Any]:
    body = require_object(payload)
    reject_unknown_fields(body, BINDING_FIELDS)
    return {
        **_route_fields(body),
        "target_type": _text(body, "targetType", required=True),
        "agent_id": _text(body, "agentId", required=False),
        "team_id": _text(body, "teamId", required=False),
        "target_member_name": _text(body, "targetMemberName", required=False),
    }


def _attachments(value: Any) -> list[Attachment]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError("attachments must be a list", field="attachments")
    out = []
    for i, item in enumerate(value):
        where = f"attachments[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(f"{where} must be an object", field=where)
        size = item.get("sizeBytes")
        if size is not None and (
            not isinstance(size, int) or isinstance(size, bool) or size < 0
        ):
            raise ValidationError(f"{where}.sizeBytes must be an integer >= 0",
                                  field=f"{where}.sizeBytes")
        try:
            out.append(Attachment(
                kind=_text(item, "kind", required=True),  # type: ignore[arg-type]
                url=_text(item, "url", required=True),  # type: ignore[arg-type]
                mime_type=_text(item, "mimeType", required=False),
                file_name=_text(item, "fileName", required=False),
                size_bytes=size,
                metadata=_object(item, "metadata"),
            ))
        except ValidationError as exc:
            raise ValidationError(f"{where}.{exc.field}: {exc.detail}",
                                  field=f"{where}.{exc.field}") from None
    return out


def parse_envelope(payload: Any) -> dict[str, Any]:
    """An inbound message; unknown fields (``routingKey`` among them) are ignored."""
    body = require_object(payload)
    content = body.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise ValidationError("content must be a string", field="content")
    received = body.get("receivedAt")
    if received is None:
        raise ValidationError("receivedAt is required", field="receivedAt")
    return {
        **_route_fields(body),
        "peer_type": _text(body, "peerType", required=True),
        "external_message_id": _text(body, "externalMessageId", required=True),
        "content": content,
        "attachments": _attachments(body.get("attachments")),
        "received_at": parse_timestamp(received, "receivedAt"),
        "metadata": _object(body, "metadata") or {},
    }


def parse_delivery_event(payload: Any) -> dict[str, Any]:
    """A gateway delivery event; unknown fields are ignored. The callback key is
    ``metadata.callbackIdempotencyKey``, else ``correlationMessageId``."""
    body = require_object(payload)
    metadata = _object(body, "metadata") or {}
    correlation = _text(body, "correlationMessageId", required=False)
    key = metadata.get("callbackIdempotencyKey")
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise ValidationError("metadata.callbackIdempotencyKey must be a non-blank string",
                              field="metadata.callbackIdempotencyKey")
    if key is None:
        if correlation is None or not correlation.strip():
            raise ValidationError(
                "correlationMessageId is required when metadata.callbackIdempotencyKey is "
                "absent", field="correlationMessageId",
            )
        key = correlation
    error = _text(body, "errorMessage", required=False)
    if error is None:
        for name in ("errorMessage", "error"):
            if isinstance(metadata.get(name), str):
                error = metadata[name]
                break
    return {
        **_route_fields(body),
        "correlation_message_id": correlation,
        "callback_idempotency_key": key,
        "status": _text(body, "status", required=True),
        "error_message": error,
        "metadata": metadata,
    }


def parse_turn_binding(payload: Any) -> dict[str, Any]:
    body = require_object(payload)
    reject_unknown_fields(body, TURN_FIELDS)
    return {
        **_route_fields(body),
        "external_message_id": _text(body, "externalMessageId", required=True),
        "turn_id": _text(body, "turnId", required=True),
        "agent_id": _text(body, "agentId", required=False),
        "team_id": _text(body, "teamId", required=False),
    }


def parse_reply(payload: Any) -> dict[str, Any]:
    """``agentId`` is required (400); a missing turn or blank text are answers, not errors."""
    body = require_object(payload)
    reject_unknown_fields(body, REPLY_FIELDS)
    return {
        "agent_id": _text(body, "agentId", required=True),
        "turn_id": _text(body, "turnId", required=False),
        "reply_text": _text(body, "replyText", required=False),
    }


def parse_ack(payload: Any) -> list[str]:
    body = require_object(payload)
    reject_unknown_fields(body, ACK_FIELDS)
    ids = body.get("messageIds")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValidationError("messageIds must be a list of strings", field="messageIds")
    if len(ids) > MAX_ACK_IDS:
        raise ValidationError(f"at most {MAX_ACK_IDS} messageIds at once", field="messageIds")
    return ids
