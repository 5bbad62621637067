"""Agent artifacts: /rest/api/agent-artifacts."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import falcon

from domains.artifacts import codec
from domains.artifacts.commands import CreateArtifact
from domains.artifacts.models import Artifact
from domains.artifacts.service import AGENT_ID
from web.context import AppContext
from web.http import query_text, read_command, send, send_page
from web.resources.doc import LIST_PARAMS, json_body, op, page_of, query, schema

ARTIFACTS = "/rest/api/agent-artifacts"


class ArtifactCollection:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._artifacts = ctx.services.artifacts

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = self._artifacts.list(
            query_text(req, "agentId"), limit=query_text(req, "limit"),
            cursor=query_text(req, "cursor"),
        )
        send_page(resp, page, codec.to_json)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        artifact = self._artifacts.create(read_command(req, self._ctx.max_body, CreateArtifact))
        send(resp, codec.to_json(artifact), falcon.HTTP_201)
        resp.location = f"{ARTIFACTS}?agentId={quote(artifact.agent_id, safe='')}"


def add_routes(app: falcon.App, ctx: AppContext) -> None:
    app.add_route(ARTIFACTS, ArtifactCollection(ctx))


ARTIFACT = schema(Artifact)

PATHS: dict[str, Any] = {
    ARTIFACTS: {
        "get": op("listArtifacts", "Artifacts of one agent run, by createdAt",
                  {"200": json_body(page_of(ARTIFACT))},
                  params=[query("agentId", AGENT_ID, required=True), *LIST_PARAMS]),
        "post": op("createArtifact", "Record an artifact", {"201": json_body(ARTIFACT)},
                   body=schema(CreateArtifact), errors=("400", "413", "415")),
    },
}
