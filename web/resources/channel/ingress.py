"""The gateway's two signed POSTs: inbound messages and delivery events.

They read the raw body themselves: when a gateway secret is set, the signature is checked over
the exact bytes received, before anything is parsed; a refused one writes a rate-limited WARNING
line (the reason code and the route the body names, never the secret, the signature or the
body). Only then is the body parsed into its shape (domains/channel/commands.py), which ignores
fields it does not know.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import falcon

from domains.channel import codec, signing
from domains.channel.commands import DeliveryReport, InboundMessage
from domains.channel.logbook import RateLimitedLog, safe_text
from domains.shapes import parse
from web.context import AppContext
from web.errors import ApiError
from web.http import JSON_TYPES, parse_text_json, send
from web.resources.channel.common import BASE, channel_service
from web.resources.doc import STR, json_body, op, schema

log = logging.getLogger("web.channel")


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
    return parse_text_json(raw)


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


class _SignedIngress:
    """A route whose body the gateway signs: verified over the raw bytes before any parsing."""

    def __init__(self, ctx: AppContext, refused: RateLimitedLog) -> None:
        self._ctx = ctx
        self._refused = refused
        self.clock: Callable[[], float] = time.time

    def _signed_body(self, req: falcon.Request) -> Any:
        return read_signed_body(req, self._ctx, self.clock, self._refused)


class IngressMessages(_SignedIngress):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = self._signed_body(req)
        result = channel_service(self._ctx).ingest(parse(InboundMessage, body))
        send(resp, codec.ingress_answer_json(result), falcon.HTTP_202)


class IngressDeliveryEvents(_SignedIngress):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = self._signed_body(req)
        event = channel_service(self._ctx).record_delivery_event(parse(DeliveryReport, body))
        send(resp, codec.delivery_answer_json(event), falcon.HTTP_202)


def add_routes(app: falcon.App, ctx: AppContext) -> None:
    # One budget for both ingress routes: a gateway with a wrong secret fails on both.
    refused = RateLimitedLog(log)
    app.add_route(f"{BASE}/channel-ingress/v1/messages", IngressMessages(ctx, refused))
    app.add_route(f"{BASE}/channel-ingress/v1/delivery-events",
                  IngressDeliveryEvents(ctx, refused))


# -- OpenAPI --------------------------------------------------------------------------------
SIGNED = {"security": [],
          "parameters": [
              {"name": "x-autobyteus-gateway-timestamp", "in": "header", "required": False,
               "schema": STR, "description": "Unix seconds (required when a gateway secret "
               "is set)"},
              {"name": "x-autobyteus-gateway-signature", "in": "header", "required": False,
               "schema": STR, "description": "hex HMAC-SHA256(secret, \"<timestamp>.<raw "
               "body>\") (required when a gateway secret is set)"},
          ]}


def _signed(operation: dict[str, Any]) -> dict[str, Any]:
    operation.update(SIGNED)
    operation["responses"]["401"] = {
        "description": "MISSING_SIGNATURE, MISSING_TIMESTAMP, INVALID_TIMESTAMP, "
        "TIMESTAMP_OUT_OF_RANGE or INVALID_SIGNATURE",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    return operation


PATHS: dict[str, Any] = {
    f"{BASE}/channel-ingress/v1/messages": {
        "post": _signed(op("postChannelMessage",
                           "An inbound message from the gateway (unknown fields are ignored; "
                           "the provider x transport pair must be one of "
                           "/rest/api/channel-capabilities, a Discord peerId is user:<digits> "
                           "or channel:<digits> and a Discord threadId digits with a channel: "
                           "peer)",
                           {"202": json_body(codec.answer_schema(codec.IngressAnswer))},
                           body=schema(InboundMessage), errors=("400", "413", "415"))),
    },
    f"{BASE}/channel-ingress/v1/delivery-events": {
        "post": _signed(op("postChannelDeliveryEvent",
                           "A delivery event from the gateway (unknown fields are ignored; its "
                           "key is metadata.callbackIdempotencyKey, else a non-blank "
                           "correlationMessageId; route rules as for messages)",
                           {"202": json_body(codec.answer_schema(codec.DeliveryAnswer))},
                           body=schema(DeliveryReport), errors=("400", "413", "415"))),
    },
}
