"""External-channel routes (api.md "External channel", domains.md section 7).

The two ingress POSTs read the raw body themselves: when a gateway secret is set, the signature is
checked over the exact bytes received, before anything is parsed; a refused one writes a
rate-limited WARNING line (the reason code and the route the body names, never the secret, the
signature or the body). They ignore fields they do not know; every other body here is strict.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import falcon

from domains.channel import codec, signing
from domains.channel.logbook import RateLimitedLog, safe_text
from domains.channel.models import DUPLICATE
from web.context import AppContext
from web.errors import ApiError
from web.http import (
    JSON_TYPES,
    if_match,
    parse_json_bytes,
    query_text,
    read_object,
    send,
    send_page,
)
from web.resources.doc import (
    BOOL,
    IF_MATCH,
    INT,
    LIST_PARAMS,
    NSTR,
    STR,
    STR_LIST,
    TIME,
    json_body,
    obj,
    op,
    page_of,
    path_param,
    query,
)

BASE = "/rest/api"
log = logging.getLogger("web.channel")


def _service(ctx: AppContext) -> Any:
    return ctx.services.channel


# -- the signed ingress -----------------------------------------------------------------------
def read_signed_body(
    req: falcon.Request, ctx: AppContext, clock: Callable[[], float] = time.time,
    refused: RateLimitedLog | None = None,
) -> Any:
    """The parsed JSON of an ingress POST: 413 past the limit, 401 on a bad signature (when a
    gateway secret is set; logged to ``refused``), 415 for another content type, 400 if
    malformed."""
    limit = ctx.max_body
    if req.content_length is not None and req.content_length > limit:
        raise ApiError(falcon.HTTP_413, "PAYLOAD_TOO_LARGE",
                       f"the body exceeds the limit of {limit} bytes")
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(falcon.HTTP_413, "PAYLOAD_TOO_LARGE",
                       f"the body exceeds the limit of {limit} bytes")
    secret = ctx.settings.gateway_shared_secret
    if secret:
        failure = signing.verify(
            secret,
            req.get_header("x-autobyteus-gateway-timestamp"),
            req.get_header("x-autobyteus-gateway-signature"),
            raw,
            now=clock(),
        )
        if failure is not None:
            if refused is not None:
                _log_refused(refused, req, raw, failure)
            raise ApiError(falcon.HTTP_401, failure, _SIGNATURE_DETAIL[failure])
    content_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if content_type not in JSON_TYPES and not content_type.endswith("+json"):
        raise ApiError(falcon.HTTP_415, "UNSUPPORTED_MEDIA_TYPE",
                       f"the body must be application/json, not {content_type or 'missing'}")
    return parse_json_bytes(raw)


def _log_refused(refused: RateLimitedLog, req: falcon.Request, raw: bytes, failure: str) -> None:
    try:
        route = codec.unverified_route(json.loads(raw))
    except ValueError:  # not JSON (or not UTF-8): no route to name
        route = None
    refused.warning("channel ingress refused: %s on %s from %s, route %s", failure, req.path,
                    req.remote_addr, "unknown" if route is None else safe_text(route, limit=300))


_SIGNATURE_DETAIL = {
    "MISSING_SIGNATURE": "the x-autobyteus-gateway-signature header is required",
    "MISSING_TIMESTAMP": "the x-autobyteus-gateway-timestamp header is required",
    "INVALID_TIMESTAMP": "x-autobyteus-gateway-timestamp must be Unix seconds",
    "TIMESTAMP_OUT_OF_RANGE": "the request timestamp is more than 300 s from the server's clock",
    "INVALID_SIGNATURE": "the signature does not match the body",
}


class IngressMessages:
    def __init__(self, ctx: AppContext, refused: RateLimitedLog) -> None:
        self._ctx = ctx
        self._refused = refused
        self.clock: Callable[[], float] = time.time

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_signed_body(req, self._ctx, self.clock, self._refused)
        result = _service(self._ctx).ingest(**codec.parse_envelope(body))
        send(resp, {
            "accepted": True,
            "duplicate": result.disposition == DUPLICATE,
            "disposition": result.disposition,
            "bindingResolved": result.binding_resolved,
            "idempotencyKey": result.idempotency_key,
            "bindingId": result.binding_id,
        }, falcon.HTTP_202)


class IngressDeliveryEvents:
    def __init__(self, ctx: AppContext, refused: RateLimitedLog) -> None:
        self._ctx = ctx
        self._refused = refused
        self.clock: Callable[[], float] = time.time

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_signed_body(req, self._ctx, self.clock, self._refused)
        event = _service(self._ctx).record_delivery_event(**codec.parse_delivery_event(body))
        send(resp, {"accepted": True, "status": event.status,
                    "callbackIdempotencyKey": event.callback_idempotency_key}, falcon.HTTP_202)


# -- bindings ---------------------------------------------------------------------------------
class Bindings:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = _service(self._ctx).list_bindings(
            limit=query_text(req, "limit"), cursor=query_text(req, "cursor"))
        send_page(resp, page, codec.to_json)

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = codec.parse_binding(read_object(req, self._ctx.max_body))
        binding, created = _service(self._ctx).upsert_binding(
            **fields, expected_etag=if_match(req))
        send(resp, codec.to_json(binding), falcon.HTTP_201 if created else falcon.HTTP_200,
             etag=True)
        if created:
            resp.location = f"{BASE}/channel-bindings/{binding.id}"


class Binding:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        send(resp, codec.to_json(_service(self._ctx).get_binding(id)), etag=True)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        _service(self._ctx).delete_binding(id, expected_etag=if_match(req))
        resp.status = falcon.HTTP_204


# -- inbox, receipts, replies, delivery events, outbox ---------------------------------------
class Inbox:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, targetType: str,
               targetId: str) -> None:
        page = _service(self._ctx).inbox(
            targetType, targetId, limit=query_text(req, "limit"),
            cursor=query_text(req, "cursor"))
        send_page(resp, page, codec.to_json)


class InboxAck:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, targetType: str,
                targetId: str) -> None:
        ids = codec.parse_ack(read_object(req, self._ctx.max_body))
        n = _service(self._ctx).ack(targetType, targetId, ids)
        send(resp, {"acknowledged": n})


class ReceiptTurns:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = codec.parse_turn_binding(read_object(req, self._ctx.max_body))
        send(resp, codec.to_json(_service(self._ctx).bind_turn(**fields)))


class Sources:
    """The receipt a reply would answer: of (agentId, turnId), else the latest of an agent or a
    team."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        agent, turn, team = (query_text(req, n) for n in ("agentId", "turnId", "teamId"))
        service = _service(self._ctx)
        if agent is not None and turn is not None:
            found = service.source_of_turn(agent, turn)
        elif agent is not None:
            found = service.latest_source_of_agent(agent)
        elif team is not None and turn is None:
            found = service.latest_source_of_team(team)
        else:
            raise ApiError(falcon.HTTP_400, "VALIDATION_ERROR",
                           "give agentId (with turnId or alone) or teamId", "agentId")
        if found is None:
            raise ApiError(falcon.HTTP_404, "NOT_FOUND", "no source receipt matches")
        send(resp, codec.to_json(found))


class Replies:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = codec.parse_reply(read_object(req, self._ctx.max_body))
        result = _service(self._ctx).publish_reply(**fields)
        send(resp, {"published": result.published, "reason": result.reason,
                    "callbackIdempotencyKey": result.callback_idempotency_key},
             falcon.HTTP_202)


class DeliveryEvent:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response,
               callbackIdempotencyKey: str) -> None:
        event = _service(self._ctx).delivery_event(callbackIdempotencyKey)
        send(resp, codec.to_json(event), etag=True)


class Outbox:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = _service(self._ctx).list_outbox(
            status=query_text(req, "status"), limit=query_text(req, "limit"),
            cursor=query_text(req, "cursor"))
        send_page(resp, page, codec.outbox_entry_json)


class OutboxRetry:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        send(resp, codec.outbox_entry_json(_service(self._ctx).retry_dead_letter(id)))


class OutboxSummary:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, codec.outbox_summary_json(_service(self._ctx).outbox_summary()))


class Capabilities:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, codec.capabilities_json())


def add_routes(app: falcon.App, ctx: AppContext) -> None:
    # One budget for both ingress routes: a gateway with a wrong secret fails on both.
    refused = RateLimitedLog(log)
    app.add_route(f"{BASE}/channel-bindings", Bindings(ctx))
    app.add_route(f"{BASE}/channel-bindings/{{id}}", Binding(ctx))
    app.add_route(f"{BASE}/channel-ingress/v1/messages", IngressMessages(ctx, refused))
    app.add_route(f"{BASE}/channel-ingress/v1/delivery-events",
                  IngressDeliveryEvents(ctx, refused))
    app.add_route(f"{BASE}/channel-inbox/{{targetType}}/{{targetId}}", Inbox(ctx))
    app.add_route(f"{BASE}/channel-inbox/{{targetType}}/{{targetId}}/ack", InboxAck(ctx))
    app.add_route(f"{BASE}/channel-receipts/turns", ReceiptTurns(ctx))
    app.add_route(f"{BASE}/channel-sources", Sources(ctx))
    app.add_route(f"{BASE}/channel-replies", Replies(ctx))
    app.add_route(f"{BASE}/channel-delivery-events/{{callbackIdempotencyKey}}", DeliveryEvent(ctx))
    app.add_route(f"{BASE}/channel-outbox", Outbox(ctx))
    app.add_route(f"{BASE}/channel-outbox/{{id}}/retry", OutboxRetry(ctx))
    app.add_route(f"{BASE}/channel-outbox-summary", OutboxSummary(ctx))
    app.add_route(f"{BASE}/channel-capabilities", Capabilities())


# -- OpenAPI --------------------------------------------------------------------------------
ENUM = {
    "provider": {"type": "string", "enum": ["WHATSAPP", "WECOM", "WECHAT", "DISCORD", "TELEGRAM"]},
    "transport": {"type": "string", "enum": ["BUSINESS_API", "PERSONAL_SESSION"]},
    "peerType": {"type": "string", "enum": ["USER", "GROUP", "CHANNEL"]},
    "targetType": {"type": "string", "enum": ["AGENT", "TEAM"]},
}
ROUTE_PROPS = {"provider": ENUM["provider"], "transport": ENUM["transport"], "accountId": STR,
               "peerId": STR, "threadId": NSTR}
ROUTE_REQUIRED = ["provider", "transport", "accountId", "peerId"]
ANY_OBJ = {"type": "object"}
NULL_OBJ = {"type": ["object", "null"]}
NULL_INT = {"type": ["integer", "null"]}
ATTACHMENT = obj({"kind": STR, "url": STR, "mimeType": NSTR, "fileName": NSTR,
                  "sizeBytes": NULL_INT, "metadata": NULL_OBJ}, ["kind", "url"], additional=True)
BINDING = obj({"id": STR, **ROUTE_PROPS, "targetType": ENUM["targetType"], "agentId": NSTR,
               "teamId": NSTR, "targetMemberName": NSTR, "createdAt": TIME, "updatedAt": TIME},
              ["id", *ROUTE_REQUIRED, "threadId", "targetType", "agentId", "teamId",
               "targetMemberName", "createdAt", "updatedAt"])
BINDING_IN = obj({**ROUTE_PROPS, "targetType": ENUM["targetType"], "agentId": NSTR,
                  "teamId": NSTR, "targetMemberName": NSTR}, [*ROUTE_REQUIRED, "targetType"])
ENVELOPE = obj({**ROUTE_PROPS, "peerType": ENUM["peerType"], "externalMessageId": STR,
                "content": STR, "attachments": {"type": "array", "items": ATTACHMENT},
                "receivedAt": TIME, "metadata": ANY_OBJ, "routingKey": STR},
               [*ROUTE_REQUIRED, "peerType", "externalMessageId", "content", "receivedAt"],
               additional=True)
INGRESS_ANSWER = obj({"accepted": BOOL, "duplicate": BOOL,
                      "disposition": {"type": "string",
                                      "enum": ["ROUTED", "ACCEPTED", "UNBOUND", "DUPLICATE"]},
                      "bindingResolved": BOOL, "idempotencyKey": STR, "bindingId": NSTR},
                     ["accepted", "duplicate", "disposition", "bindingResolved",
                      "idempotencyKey", "bindingId"])
STATUS = {"type": "string", "enum": ["PENDING", "SENT", "DELIVERED", "FAILED"]}
DELIVERY_IN = obj({**ROUTE_PROPS, "correlationMessageId": NSTR, "status": STATUS,
                   "errorMessage": NSTR, "occurredAt": TIME,
                   "metadata": obj({"callbackIdempotencyKey": STR}, additional=True)},
                  [*ROUTE_REQUIRED, "status"], additional=True)
DELIVERY_ANSWER = obj({"accepted": BOOL, "status": STATUS, "callbackIdempotencyKey": STR},
                      ["accepted", "status", "callbackIdempotencyKey"])
DELIVERY_EVENT = obj({"id": STR, **ROUTE_PROPS, "correlationMessageId": NSTR,
                      "callbackIdempotencyKey": STR, "status": STATUS, "errorMessage": NSTR,
                      "metadata": ANY_OBJ, "createdAt": TIME, "updatedAt": TIME},
                     ["id", *ROUTE_REQUIRED, "callbackIdempotencyKey", "status"])
INBOX_MESSAGE = obj({
    "id": STR, "targetType": ENUM["targetType"], "targetId": STR, "targetMemberName": NSTR,
    "bindingId": STR, "content": STR, "attachments": {"type": "array", "items": ATTACHMENT},
    "metadata": ANY_OBJ,
    "externalSource": obj({**ROUTE_PROPS, "peerType": ENUM["peerType"],
                           "externalMessageId": STR, "routingKey": STR, "receivedAt": TIME}),
    "enqueuedAt": TIME,
}, ["id", "targetType", "targetId", "bindingId", "content", "externalSource", "enqueuedAt"])
RECEIPT = obj({"id": STR, **ROUTE_PROPS, "externalMessageId": STR, "turnId": NSTR,
               "agentId": NSTR, "teamId": NSTR, "receivedAt": TIME,
               "ingressState": {"type": ["string", "null"], "enum": ["ROUTED", "UNBOUND", None]},
               "createdAt": TIME, "updatedAt": TIME},
              ["id", *ROUTE_REQUIRED, "externalMessageId", "receivedAt", "ingressState"])
TURN_IN = obj({**ROUTE_PROPS, "externalMessageId": STR, "turnId": STR, "agentId": NSTR,
               "teamId": NSTR}, [*ROUTE_REQUIRED, "externalMessageId", "turnId"])
REPLY_IN = obj({"agentId": STR, "turnId": NSTR, "replyText": NSTR}, ["agentId"])
REPLY_ANSWER = obj({"published": BOOL,
                    "reason": {"type": ["string", "null"],
                               "enum": ["TURN_ID_MISSING", "EMPTY_REPLY",
                                        "CALLBACK_NOT_CONFIGURED", "SOURCE_NOT_FOUND",
                                        "BINDING_NOT_FOUND", "DUPLICATE", None]},
                    "callbackIdempotencyKey": NSTR},
                   ["published", "reason", "callbackIdempotencyKey"])
OUTBOX_STATUS = {"type": "string",
                 "enum": ["PENDING", "DISPATCHING", "SENT", "FAILED_RETRY", "DEAD_LETTER"]}
NULL_TIME = {"type": ["string", "null"], "format": "date-time"}
OUTBOX_ENTRY = obj({"id": STR, "callbackIdempotencyKey": STR, "status": OUTBOX_STATUS,
                    "attempts": INT, "dueAt": NULL_TIME, "nextAttemptAt": NULL_TIME,
                    "leaseOwner": NSTR, "lastError": NSTR, "envelope": ANY_OBJ,
                    "createdAt": TIME, "updatedAt": TIME},
                   ["id", "callbackIdempotencyKey", "status", "attempts", "nextAttemptAt",
                    "lastError", "envelope", "createdAt", "updatedAt"])
OUTBOX_SUMMARY = obj({"counts": obj({s: INT for s in OUTBOX_STATUS["enum"]},
                                    list(OUTBOX_STATUS["enum"])),
                      "oldestPendingCreatedAt": NULL_TIME,
                      "oldestPendingAgeSeconds": {"type": ["number", "null"]}, "asOf": TIME},
                     ["counts", "oldestPendingCreatedAt", "oldestPendingAgeSeconds", "asOf"])
CAPABILITY = obj({"provider": ENUM["provider"], "transport": ENUM["transport"],
                  "targetTypes": {"type": "array", "items": ENUM["targetType"]}},
                 ["provider", "transport", "targetTypes"])
SIGNED = {"security": [],
          "parameters": [
              {"name": "x-autobyteus-gateway-timestamp", "in": "header", "required": False,
               "schema": STR, "description": "Unix seconds (required when a gateway secret "
               "is set)"},
              {"name": "x-autobyteus-gateway-signature", "in": "header", "required": False,
               "schema": STR, "description": "hex HMAC-SHA256(secret, \"<timestamp>.<raw "
               "body>\") (required when a gateway secret is set)"},
          ]}
TARGET_PARAMS = [path_param("targetType"), path_param("targetId")]


def _signed(operation: dict[str, Any]) -> dict[str, Any]:
    operation.update(SIGNED)
    operation["responses"]["401"] = {
        "description": "MISSING_SIGNATURE, MISSING_TIMESTAMP, INVALID_TIMESTAMP, "
        "TIMESTAMP_OUT_OF_RANGE or INVALID_SIGNATURE",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    return operation


PATHS: dict[str, Any] = {
    f"{BASE}/channel-bindings": {
        "get": op("listChannelBindings", "Channel bindings, newest updatedAt first",
                  {"200": json_body(page_of(BINDING))}, params=LIST_PARAMS),
        "put": op("upsertChannelBinding", "Create or replace the binding of a route",
                  {"200": json_body(BINDING, "replaced"), "201": json_body(BINDING, "created")},
                  body=BINDING_IN, params=[IF_MATCH], errors=("400", "412")),
    },
    f"{BASE}/channel-bindings/{{id}}": {
        "get": op("getChannelBinding", "One channel binding", {"200": json_body(BINDING)},
                  params=[path_param("id")], errors=("404",)),
        "delete": op("deleteChannelBinding", "Delete a channel binding",
                     {"204": {"description": "deleted"}}, params=[path_param("id"), IF_MATCH],
                     errors=("404", "412")),
    },
    f"{BASE}/channel-ingress/v1/messages": {
        "post": _signed(op("postChannelMessage",
                           "An inbound message from the gateway (unknown fields are ignored)",
                           {"202": json_body(INGRESS_ANSWER)}, body=ENVELOPE,
                           errors=("400", "413", "415"))),
    },
    f"{BASE}/channel-ingress/v1/delivery-events": {
        "post": _signed(op("postChannelDeliveryEvent",
                           "A delivery event from the gateway (unknown fields are ignored)",
                           {"202": json_body(DELIVERY_ANSWER)}, body=DELIVERY_IN,
                           errors=("400", "413", "415"))),
    },
    f"{BASE}/channel-inbox/{{targetType}}/{{targetId}}": {
        "get": op("listChannelInbox", "Queued inbound messages of an AGENT or TEAM, oldest first",
                  {"200": json_body(page_of(INBOX_MESSAGE))},
                  params=[*TARGET_PARAMS, *LIST_PARAMS]),
    },
    f"{BASE}/channel-inbox/{{targetType}}/{{targetId}}/ack": {
        "post": op("ackChannelInbox", "Acknowledge messages: they leave the inbox",
                   {"200": json_body(obj({"acknowledged": INT}, ["acknowledged"]))},
                   body=obj({"messageIds": STR_LIST}, ["messageIds"]), params=TARGET_PARAMS),
    },
    f"{BASE}/channel-receipts/turns": {
        "post": op("bindChannelTurn", "Turn T of an agent answers message M (upsert M's receipt)",
                   {"200": json_body(RECEIPT)}, body=TURN_IN),
    },
    f"{BASE}/channel-sources": {
        "get": op("getChannelSource",
                  "The source receipt of (agentId, turnId), or the latest of an agent or team",
                  {"200": json_body(RECEIPT)},
                  params=[query("agentId"), query("turnId"), query("teamId")],
                  errors=("400", "404")),
    },
    f"{BASE}/channel-replies": {
        "post": op("publishChannelReply", "Queue an agent's reply for delivery to the gateway",
                   {"202": json_body(REPLY_ANSWER)}, body=REPLY_IN),
    },
    f"{BASE}/channel-delivery-events/{{callbackIdempotencyKey}}": {
        "get": op("getChannelDeliveryEvent", "The delivery event of a callbackIdempotencyKey",
                  {"200": json_body(DELIVERY_EVENT)}, params=[path_param("callbackIdempotencyKey")],
                  errors=("404",)),
    },
    f"{BASE}/channel-outbox": {
        "get": op("listChannelOutbox", "Outbox entries, newest first (operators' view)",
                  {"200": json_body(page_of(OUTBOX_ENTRY))},
                  params=[query("status", OUTBOX_STATUS), *LIST_PARAMS]),
    },
    f"{BASE}/channel-outbox/{{id}}/retry": {
        "post": op("retryChannelOutboxEntry",
                   "Put a DEAD_LETTER entry back to PENDING with a fresh attempt budget",
                   {"200": json_body(OUTBOX_ENTRY)}, params=[path_param("id")],
                   errors=("404", "409")),
    },
    f"{BASE}/channel-outbox-summary": {
        "get": op("getChannelOutboxSummary",
                  "Outbox entries per state and the age of the oldest one still to deliver",
                  {"200": json_body(OUTBOX_SUMMARY)}, errors=()),
    },
    f"{BASE}/channel-capabilities": {
        "get": op("listChannelCapabilities",
                  "The accepted provider x transport pairs and the targets each can bind",
                  {"200": json_body(page_of(CAPABILITY))}, errors=()),
    },
}
