"""The channel's records over HTTP: bindings, the inbox of an agent or a team, turn receipts and
sources, replies and delivery events."""

from __future__ import annotations

from typing import Any

import falcon

from domains.channel import codec
from domains.channel.commands import (
    TARGET_TYPE,
    AckMessages,
    BindTurn,
    InboxTarget,
    PublishReply,
    PutBinding,
)
from domains.channel.models import Binding as BindingRecord
from domains.channel.models import DeliveryEvent as DeliveryEventRecord
from domains.channel.models import InboxMessage, Receipt
from domains.shapes import Text, parse
from web.context import AppContext
from web.errors import ApiError
from web.http import if_match, query_text, read_command, send, send_page
from web.resources.channel.common import BASE, channel_service
from web.resources.doc import IF_MATCH, LIST_PARAMS, json_body, op, page_of, path_param, query
from web.resources.doc import schema as component


def inbox_target(target_type: str, target_id: str) -> InboxTarget:
    """The target a path names, checked by its shape (400 naming targetType or targetId)."""
    return parse(InboxTarget, {"targetType": target_type, "targetId": target_id})


# -- bindings ---------------------------------------------------------------------------------
class Bindings:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = channel_service(self._ctx).list_bindings(
            limit=query_text(req, "limit"), cursor=query_text(req, "cursor"))
        send_page(resp, page, codec.to_json)

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        command = read_command(req, self._ctx.max_body, PutBinding)
        binding, created = channel_service(self._ctx).upsert_binding(
            command, expected_etag=if_match(req))
        send(resp, codec.to_json(binding), falcon.HTTP_201 if created else falcon.HTTP_200,
             etag=True)
        if created:
            resp.location = f"{BASE}/channel-bindings/{binding.id}"


class Binding:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        send(resp, codec.to_json(channel_service(self._ctx).get_binding(id)), etag=True)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        channel_service(self._ctx).delete_binding(id, expected_etag=if_match(req))
        resp.status = falcon.HTTP_204


def add_binding_routes(app: falcon.App, ctx: AppContext) -> None:
    app.add_route(f"{BASE}/channel-bindings", Bindings(ctx))
    app.add_route(f"{BASE}/channel-bindings/{{id}}", Binding(ctx))


# -- inbox, receipts, replies, delivery events --------------------------------------------------
class Inbox:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, targetType: str,
               targetId: str) -> None:
        page = channel_service(self._ctx).inbox(
            inbox_target(targetType, targetId), limit=query_text(req, "limit"),
            cursor=query_text(req, "cursor"))
        send_page(resp, page, codec.to_json)


class InboxAck:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, targetType: str,
                targetId: str) -> None:
        target = inbox_target(targetType, targetId)
        command = read_command(req, self._ctx.max_body, AckMessages)
        send(resp, codec.acknowledged_json(channel_service(self._ctx).ack(target, command)))


class ReceiptTurns:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        command = read_command(req, self._ctx.max_body, BindTurn)
        send(resp, codec.to_json(channel_service(self._ctx).bind_turn(command)))


class Sources:
    """The receipt a reply would answer: of (agentId, turnId), else the latest of an agent or a
    team."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        agent, turn, team = (query_text(req, n) for n in ("agentId", "turnId", "teamId"))
        service = channel_service(self._ctx)
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
        command = read_command(req, self._ctx.max_body, PublishReply)
        result = channel_service(self._ctx).publish_reply(command)
        send(resp, codec.reply_answer_json(result), falcon.HTTP_202)


class DeliveryEvent:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response,
               callbackIdempotencyKey: str) -> None:
        event = channel_service(self._ctx).delivery_event(callbackIdempotencyKey)
        send(resp, codec.to_json(event), etag=True)


def add_routes(app: falcon.App, ctx: AppContext) -> None:
    app.add_route(f"{BASE}/channel-inbox/{{targetType}}/{{targetId}}", Inbox(ctx))
    app.add_route(f"{BASE}/channel-inbox/{{targetType}}/{{targetId}}/ack", InboxAck(ctx))
    app.add_route(f"{BASE}/channel-receipts/turns", ReceiptTurns(ctx))
    app.add_route(f"{BASE}/channel-sources", Sources(ctx))
    app.add_route(f"{BASE}/channel-replies", Replies(ctx))
    app.add_route(f"{BASE}/channel-delivery-events/{{callbackIdempotencyKey}}", DeliveryEvent(ctx))


# -- OpenAPI --------------------------------------------------------------------------------
BINDING = codec.answer_schema(BindingRecord)
RECEIPT = codec.answer_schema(Receipt)
TARGET_PARAMS = [path_param("targetType", TARGET_TYPE), path_param("targetId", Text())]
ID = [path_param("id")]

BINDING_PATHS: dict[str, Any] = {
    f"{BASE}/channel-bindings": {
        "get": op("listChannelBindings", "Channel bindings, newest updatedAt first",
                  {"200": json_body(page_of(BINDING))}, params=LIST_PARAMS),
        "put": op("upsertChannelBinding",
                  "Create or replace the binding of a route (the provider x transport pair and "
                  "targetType must be one of /rest/api/channel-capabilities; an AGENT target "
                  "takes agentId alone, a TEAM target teamId and optionally targetMemberName; "
                  "Discord ids as for ingress)",
                  {"200": json_body(BINDING, "replaced"), "201": json_body(BINDING, "created")},
                  body=component(PutBinding), params=[IF_MATCH], errors=("400", "412")),
    },
    f"{BASE}/channel-bindings/{{id}}": {
        "get": op("getChannelBinding", "One channel binding", {"200": json_body(BINDING)},
                  params=ID, errors=("404",)),
        "delete": op("deleteChannelBinding", "Delete a channel binding",
                     {"204": {"description": "deleted"}}, params=[*ID, IF_MATCH],
                     errors=("404", "412")),
    },
}

PATHS: dict[str, Any] = {
    f"{BASE}/channel-inbox/{{targetType}}/{{targetId}}": {
        "get": op("listChannelInbox", "Queued inbound messages of an AGENT or TEAM, oldest first",
                  {"200": json_body(page_of(codec.answer_schema(InboxMessage)))},
                  params=[*TARGET_PARAMS, *LIST_PARAMS]),
    },
    f"{BASE}/channel-inbox/{{targetType}}/{{targetId}}/ack": {
        "post": op("ackChannelInbox", "Acknowledge messages: they leave the inbox",
                   {"200": json_body(codec.answer_schema(codec.Acknowledged))},
                   body=component(AckMessages), params=TARGET_PARAMS),
    },
    f"{BASE}/channel-receipts/turns": {
        "post": op("bindChannelTurn",
                   "Turn T of an agent answers message M (upsert M's receipt; agentId or teamId "
                   "is required; route rules as for ingress)",
                   {"200": json_body(RECEIPT)}, body=component(BindTurn)),
    },
    f"{BASE}/channel-sources": {
        "get": op("getChannelSource",
                  "The source receipt of (agentId, turnId), or the latest of an agent or team "
                  "(agentId, or teamId without turnId, is required)",
                  {"200": json_body(RECEIPT)},
                  params=[query("agentId"), query("turnId"), query("teamId")],
                  errors=("400", "404")),
    },
    f"{BASE}/channel-replies": {
        "post": op("publishChannelReply", "Queue an agent's reply for delivery to the gateway",
                   {"202": json_body(codec.answer_schema(codec.ReplyAnswer))},
                   body=component(PublishReply)),
    },
    f"{BASE}/channel-delivery-events/{{callbackIdempotencyKey}}": {
        "get": op("getChannelDeliveryEvent", "The delivery event of a callbackIdempotencyKey",
                  {"200": json_body(codec.answer_schema(DeliveryEventRecord))},
                  params=[path_param("callbackIdempotencyKey")], errors=("404",)),
    },
}
