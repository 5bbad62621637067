"""The external-channel codec: the one place where channel records become JSON or bytes, and where
its answers are declared.

JSON is camelCase with ISO-8601 millisecond ``Z`` timestamps; a route is flattened into its five
fields, with a stored thread of ``""`` shown as null. Stored bytes are that JSON plus a format
version, ``{"v": 1, ...}``; :func:`from_bytes` upgrades older versions on read.

Request bodies are the shapes of commands.py. The answers are declared here once (attrs classes
with a Rule on enum fields), and :func:`answer_schema` gives the JSON Schema of each answer and
record from its declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from domains.channel.models import (
    CAPABILITIES,
    DELIVERY_STATUSES,
    DUPLICATE,
    FAILED_RETRY,
    OUTBOX_PENDING,
    OUTBOX_STATUSES,
    PROVIDERS,
    REPLY_REASONS,
    ROUTED,
    TARGET_TYPES,
    TRANSPORTS,
    UNBOUND,
    Attachment,
    Binding,
    DeliveryEvent,
    ExternalSource,
    InboxMessage,
    IngressResult,
    OutboxEntry,
    OutboxSummary,
    Receipt,
    ReplyResult,
    Route,
)
from domains.codec_support import RecordFormatError as RecordFormatError
from domains.codec_support import (
    camel,
    dump_envelope,
    load_envelope,
    make_converter,
    register_camel,
)
from domains.common import format_timestamp
from domains.shapes import Choice, json_schema
from domains.shapes.rules import RULE_KEY

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


# -- answers ------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class IngressAnswer:
    """The answer to an inbound message (``disposition`` ROUTED may be spelled ACCEPTED by a
    setting)."""

    accepted: bool
    duplicate: bool
    disposition: str = attrs.field(metadata={RULE_KEY: Choice(
        (ROUTED, "ACCEPTED", UNBOUND, DUPLICATE))})
    binding_resolved: bool
    idempotency_key: str
    binding_id: str | None


@attrs.frozen(kw_only=True)
class DeliveryAnswer:
    """The answer to a delivery event: the status now stored (a late report is ignored)."""

    accepted: bool
    status: str = attrs.field(metadata={RULE_KEY: Choice(DELIVERY_STATUSES)})
    callback_idempotency_key: str


@attrs.frozen(kw_only=True)
class ReplyAnswer:
    """Whether a reply was queued, and if not why."""

    published: bool
    reason: str | None = attrs.field(metadata={RULE_KEY: Choice(REPLY_REASONS, nullable=True)})
    callback_idempotency_key: str | None


@attrs.frozen(kw_only=True)
class Acknowledged:
    acknowledged: int


@attrs.frozen(kw_only=True)
class Capability:
    """An accepted provider x transport pair and the targets its routes can bind."""

    provider: str = attrs.field(metadata={RULE_KEY: Choice(PROVIDERS)})
    transport: str = attrs.field(metadata={RULE_KEY: Choice(TRANSPORTS)})
    target_types: list[str]


for _answer in (IngressAnswer, DeliveryAnswer, ReplyAnswer, Acknowledged, Capability):
    register_camel(converter, _answer)


def ingress_answer_json(result: IngressResult) -> dict[str, Any]:
    return converter.unstructure(IngressAnswer(
        accepted=True, duplicate=result.duplicate, disposition=result.disposition,
        binding_resolved=result.binding_resolved, idempotency_key=result.idempotency_key,
        binding_id=result.binding_id), IngressAnswer)


def delivery_answer_json(event: DeliveryEvent) -> dict[str, Any]:
    return converter.unstructure(DeliveryAnswer(
        accepted=True, status=event.status,
        callback_idempotency_key=event.callback_idempotency_key), DeliveryAnswer)


def reply_answer_json(result: ReplyResult) -> dict[str, Any]:
    return converter.unstructure(ReplyAnswer(
        published=result.published, reason=result.reason,
        callback_idempotency_key=result.callback_idempotency_key), ReplyAnswer)


def acknowledged_json(count: int) -> dict[str, Any]:
    return converter.unstructure(Acknowledged(acknowledged=count), Acknowledged)


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
    items = [Capability(provider=p, transport=t, target_types=list(targets))
             for (p, t), targets in CAPABILITIES.items()]
    return {"items": converter.unstructure(items, list[Capability]), "nextCursor": None}


# -- the JSON Schemas of the answers, from the same declarations -------------------------------
_ROUTE_SCHEMA: dict[str, Any] = {
    "provider": Choice(PROVIDERS).schema(), "transport": Choice(TRANSPORTS).schema(),
    "accountId": {"type": "string"}, "peerId": {"type": "string"},
    "threadId": {"type": ["string", "null"]},
}


def answer_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of a record's or an answer's JSON form: :func:`json_schema` of its
    declaration, with a ``route`` flattened into its five fields as :func:`to_json` does it, and
    the operators' additions (an outbox entry's ``nextAttemptAt``, the summary's counts by
    state, a capability's target types)."""
    schema = json_schema(cls)
    properties = dict(schema["properties"])
    required = list(schema.get("required", []))
    if "route" in properties:
        del properties["route"]
        properties = {"id": properties.pop("id"), **_ROUTE_SCHEMA, **properties}
        required = ["id", *_ROUTE_SCHEMA, *(n for n in required if n not in ("id", "route"))]
    if cls is OutboxEntry:
        properties["nextAttemptAt"] = {"type": ["string", "null"], "format": "date-time"}
        required.append("nextAttemptAt")
    if cls is Capability:
        properties["targetTypes"] = {"type": "array", "items": Choice(TARGET_TYPES).schema()}
    if cls is OutboxSummary:
        properties["counts"] = {
            "type": "object", "additionalProperties": False, "required": list(OUTBOX_STATUSES),
            "properties": {status: {"type": "integer"} for status in OUTBOX_STATUSES}}
    return {**schema, "properties": properties, "required": required}


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
