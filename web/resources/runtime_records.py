"""MCP server configurations and token usage (agent artifacts: web/resources/artifacts.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import falcon

from domains.mcp_servers import codec as mcp_codec
from domains.mcp_servers.commands import CONFIGURATION, SERVER_ID
from domains.mcp_servers.import_document import ImportDocument
from domains.mcp_servers.models import (
    ImportResult,
    StdioServer,
    StreamableHttpServer,
    WebsocketServer,
)
from domains.token_usage import codec as usage_codec
from domains.token_usage.codec import ModelStatisticsAnswer, TokenUsageAnswer, TotalCostAnswer
from domains.token_usage.commands import BOUND, RecordConversation, RecordUsage
from web.context import AppContext
from web.http import if_match, query_checked, query_text, read_command, read_json, send, send_page
from web.resources.doc import (
    IF_MATCH,
    LIST_PARAMS,
    json_body,
    op,
    page_of,
    query,
    schema,
)

MCP = "/rest/api/mcp-servers"
USAGE = "/rest/api/token-usage"


class McpServerCollection:
    def __init__(self, ctx: AppContext) -> None:
        self._mcp = ctx.services.mcp_servers

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = self._mcp.list(limit=query_text(req, "limit"), cursor=query_text(req, "cursor"))
        send_page(resp, page, mcp_codec.to_json)


class McpServerItem:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._mcp = ctx.services.mcp_servers

    def on_get(self, req: falcon.Request, resp: falcon.Response, server_id: str) -> None:
        send(resp, mcp_codec.to_json(self._mcp.get(server_id)), etag=True)

    def on_put(self, req: falcon.Request, resp: falcon.Response, server_id: str) -> None:
        config = CONFIGURATION.parse(read_json(req, self._ctx.max_body))
        server, created = self._mcp.configure(server_id, config, expected_etag=if_match(req))
        send(resp, mcp_codec.to_json(server), falcon.HTTP_201 if created else falcon.HTTP_200,
             etag=True)
        if created:
            resp.location = f"{MCP}/{quote(server.server_id, safe='')}"

    def on_delete(self, req: falcon.Request, resp: falcon.Response, server_id: str) -> None:
        self._mcp.delete(server_id, expected_etag=if_match(req))
        resp.status = falcon.HTTP_204


class McpServerImport:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._mcp = ctx.services.mcp_servers

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        result = self._mcp.import_servers(read_command(req, self._ctx.max_body, ImportDocument))
        send(resp, mcp_codec.import_result_to_json(result))


def _records_of(agent_id: str) -> str:
    # Records have no URL of their own: the Location of a new one is its agent run's records.
    return f"{USAGE}/records?agentId={quote(agent_id, safe='')}"


class UsageRecords:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._usage = ctx.services.token_usage

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = self._usage.list(
            query_checked(req, "start", BOUND), query_checked(req, "end", BOUND),
            llm_model=query_text(req, "llmModel"), agent_id=query_text(req, "agentId"),
            limit=query_text(req, "limit"), cursor=query_text(req, "cursor"),
        )
        send_page(resp, page, usage_codec.to_json)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        record = self._usage.record(read_command(req, self._ctx.max_body, RecordUsage))
        send(resp, usage_codec.to_json(record), falcon.HTTP_201)
        resp.location = _records_of(record.agent_id)


class UsageConversations:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._usage = ctx.services.token_usage

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        records = self._usage.record_conversation(
            read_command(req, self._ctx.max_body, RecordConversation))
        send(resp, usage_codec.records_to_json(records), falcon.HTTP_201)
        resp.location = _records_of(records[0].agent_id)


class UsageTotalCost:
    def __init__(self, ctx: AppContext) -> None:
        self._usage = ctx.services.token_usage

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        total = self._usage.total_cost(query_checked(req, "start", BOUND),
                                       query_checked(req, "end", BOUND))
        send(resp, usage_codec.total_cost_to_json(total))


class UsageStatistics:
    def __init__(self, ctx: AppContext) -> None:
        self._usage = ctx.services.token_usage

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        groups = self._usage.statistics(query_checked(req, "start", BOUND),
                                        query_checked(req, "end", BOUND))
        send(resp, [usage_codec.statistics_to_json(g) for g in groups])


def add_routes(app: falcon.App, ctx: AppContext) -> None:
    app.add_route(MCP, McpServerCollection(ctx))
    # The literal route wins over the {server_id} template in Falcon's router.
    app.add_route(MCP + "/import", McpServerImport(ctx))
    app.add_route(MCP + "/{server_id}", McpServerItem(ctx))
    app.add_route(USAGE + "/records", UsageRecords(ctx))
    app.add_route(USAGE + "/conversations", UsageConversations(ctx))
    app.add_route(USAGE + "/total-cost", UsageTotalCost(ctx))
    app.add_route(USAGE + "/statistics", UsageStatistics(ctx))


MCP_SERVER = {"oneOf": [schema(StdioServer), schema(StreamableHttpServer),
                       schema(WebsocketServer)]}
USAGE_RECORD = schema(TokenUsageAnswer)
RANGE = [query("start", BOUND, description="inclusive; RFC 3339 timestamp, or a date YYYY-MM-DD "
                                           "meaning midnight UTC"),
         query("end", BOUND, description="inclusive; RFC 3339 timestamp, or a date YYYY-MM-DD "
                                         "meaning midnight UTC")]
#: A serverId holding "/" (an import may store one) has no path of its own: 404 on every route.
SID = [{"name": "server_id", "in": "path", "required": True, "schema": SERVER_ID.schema()}]

PATHS: dict[str, Any] = {
    MCP: {"get": op("listMcpServers", "Every MCP server configuration, by serverId",
                    {"200": json_body(page_of(MCP_SERVER))}, params=LIST_PARAMS)},
    MCP + "/{server_id}": {
        "get": op("getMcpServer", "One configuration", {"200": json_body(MCP_SERVER)},
                  params=SID, errors=("404",)),
        "put": op("configureMcpServer",
                  "Create or replace a configuration (a serverId in the body must be the path's)",
                  {"200": json_body(MCP_SERVER), "201": json_body(MCP_SERVER)},
                  body=CONFIGURATION.schema(ref=schema),
                  params=[*SID, IF_MATCH], errors=("400", "404", "412", "413", "415")),
        "delete": op("deleteMcpServer", "Delete a configuration",
                     {"204": {"description": "deleted"}}, params=[*SID, IF_MATCH],
                     errors=("404", "412")),
    },
    MCP + "/import": {"post": op(
        "importMcpServers", "Import {mcpServers: {...}}: valid entries in one transaction",
        {"200": json_body(schema(ImportResult))}, body=schema(ImportDocument),
        errors=("400", "413", "415"))},
    USAGE + "/records": {
        "get": op("listTokenUsageRecords", "Records in [start, end], by createdAt",
                  {"200": json_body(page_of(USAGE_RECORD))},
                  params=[*RANGE, query("llmModel"), query("agentId"), *LIST_PARAMS]),
        "post": op("recordTokenUsage", "Record one usage", {"201": json_body(USAGE_RECORD)},
                   body=schema(RecordUsage), errors=("400", "413", "415")),
    },
    USAGE + "/conversations": {"post": op(
        "recordConversation", "A turn's user and assistant records, in one transaction",
        {"201": json_body({"type": "array", "items": USAGE_RECORD, "minItems": 2,
                           "maxItems": 2})},
        body=schema(RecordConversation), errors=("400", "413", "415"))},
    USAGE + "/total-cost": {"get": op(
        "tokenUsageTotalCost", "Total cost over [start, end]",
        {"200": json_body(schema(TotalCostAnswer))}, params=RANGE)},
    USAGE + "/statistics": {"get": op(
        "tokenUsageStatistics", "Per-model statistics over [start, end], by first appearance",
        {"200": json_body({"type": "array", "items": schema(ModelStatisticsAnswer)})},
        params=RANGE)},
}
