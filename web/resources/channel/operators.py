"""The operators' channel routes (domains.md 7.9): the outbox by state, putting a dead letter
back, the outbox at a glance, and the accepted provider x transport pairs."""

from __future__ import annotations

from typing import Any

import falcon

from domains.channel import codec
from domains.channel.commands import OUTBOX_STATUS
from domains.channel.models import OutboxEntry, OutboxSummary
from web.context import AppContext
from web.http import query_checked, query_text, send, send_page
from web.resources.channel.common import BASE, channel_service
from web.resources.doc import LIST_PARAMS, json_body, op, page_of, path_param, query


class Outbox:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = channel_service(self._ctx).list_outbox(
            status=query_checked(req, "status", OUTBOX_STATUS), limit=query_text(req, "limit"),
            cursor=query_text(req, "cursor"))
        send_page(resp, page, codec.outbox_entry_json)


class OutboxRetry:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        send(resp, codec.outbox_entry_json(channel_service(self._ctx).retry_dead_letter(id)))


class OutboxSummaryResource:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, codec.outbox_summary_json(channel_service(self._ctx).outbox_summary()))


class Capabilities:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, codec.capabilities_json())


def add_routes(app: falcon.App, ctx: AppContext) -> None:
    app.add_route(f"{BASE}/channel-outbox", Outbox(ctx))
    app.add_route(f"{BASE}/channel-outbox/{{id}}/retry", OutboxRetry(ctx))
    app.add_route(f"{BASE}/channel-outbox-summary", OutboxSummaryResource(ctx))
    app.add_route(f"{BASE}/channel-capabilities", Capabilities())


OUTBOX_ENTRY = codec.answer_schema(OutboxEntry)

PATHS: dict[str, Any] = {
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
                  {"200": json_body(codec.answer_schema(OutboxSummary))}, errors=()),
    },
    f"{BASE}/channel-capabilities": {
        "get": op("listChannelCapabilities",
                  "The accepted provider x transport pairs and the targets each can bind",
                  {"200": json_body(page_of(codec.answer_schema(codec.Capability)))},
                  errors=()),
    },
}
