"""Agent definitions and agent team definitions."""

from __future__ import annotations

from typing import Any

import falcon

from domains.agent_definitions import codec as agent_codec
from domains.agent_definitions.commands import CreateAgentDefinition, PatchAgentDefinition
from domains.agent_definitions.models import AgentDefinition
from domains.agent_teams import codec as team_codec
from domains.agent_teams.commands import CreateAgentTeam, PatchAgentTeam
from domains.agent_teams.models import AgentTeamDefinition
from domains.prompts.models import Prompt
from domains.shapes import Choice, json_schema
from web.context import AppContext
from web.http import query_checked
from web.resources.crud import CrudCollection, CrudItem
from web.resources.doc import (
    IF_MATCH,
    LIST_PARAMS,
    json_body,
    op,
    page_of,
    path_param,
    query,
    schema,
)

AGENTS = "/rest/api/agent-definitions"
TEAMS = "/rest/api/agent-team-definitions"


#: ?includePrompts=: true/false or 1/0, any case.
INCLUDE_PROMPTS = Choice(("true", "false", "1", "0"), case_insensitive=True)


class AgentDefinitionItem(
        CrudItem[AgentDefinition, CreateAgentDefinition, PatchAgentDefinition]):
    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx, ctx.services.agent_definitions, agent_codec.to_json,
                         PatchAgentDefinition)
        self._agents = ctx.services.agent_definitions

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        if query_checked(req, "includePrompts", INCLUDE_PROMPTS) in ("true", "1"):
            detail = self._agents.get_with_prompts(id)
            resp.media = agent_codec.detail_to_json(detail)
            # The tag of the definition itself: what PATCH and DELETE compare If-Match with.
            resp.etag = self._agents.etag(detail.definition)
            return
        super().on_get(req, resp, id)


def add_routes(app: falcon.App, ctx: AppContext) -> None:
    agents = ctx.services.agent_definitions
    teams = ctx.services.agent_teams
    app.add_route(AGENTS, CrudCollection(ctx, AGENTS, agents, agent_codec.to_json,
                                         CreateAgentDefinition))
    app.add_route(AGENTS + "/{id}", AgentDefinitionItem(ctx))
    app.add_route(TEAMS, CrudCollection(ctx, TEAMS, teams, team_codec.to_json, CreateAgentTeam))
    app.add_route(TEAMS + "/{id}", CrudItem(ctx, teams, team_codec.to_json, PatchAgentTeam))


AGENT = schema(AgentDefinition)
#: The definition's own fields plus its mapped family's prompts (?includePrompts=true).
AGENT_DETAIL = {**json_schema(AgentDefinition), "properties": {
    **json_schema(AgentDefinition)["properties"],
    "prompts": {"type": "array", "items": schema(Prompt)}}}
TEAM = schema(AgentTeamDefinition)
ID = [path_param("id")]
WRITE_ERRORS = ("400", "404", "409", "412", "413", "415")


def _crud_paths(base: str, noun: str, record: dict, create: dict, patch: dict,
                get_params: list | None = None, get_record: dict | None = None) -> dict:
    return {
        base: {
            "get": op(f"list{noun}s", f"List {noun}s (by name)",
                      {"200": json_body(page_of(record))}, params=LIST_PARAMS),
            "post": op(f"create{noun}", f"Create a {noun}", {"201": json_body(record)}, body=create,
                       errors=("400", "409", "413", "415")),
        },
        base + "/{id}": {
            "get": op(f"get{noun}", f"One {noun}", {"200": json_body(get_record or record)},
                      params=[*ID, *(get_params or [])], errors=("400", "404")),
            "patch": op(f"update{noun}", f"Change a {noun}", {"200": json_body(record)},
                        body=patch, params=[*ID, IF_MATCH], errors=WRITE_ERRORS),
            "delete": op(f"delete{noun}", f"Delete a {noun}", {"204": {"description": "deleted"}},
                         params=[*ID, IF_MATCH], errors=("404", "412")),
        },
    }


PATHS: dict[str, Any] = {
    **_crud_paths(AGENTS, "AgentDefinition", AGENT, schema(CreateAgentDefinition),
                  schema(PatchAgentDefinition),
                  get_params=[query("includePrompts", INCLUDE_PROMPTS)],
                  get_record=AGENT_DETAIL),
    **_crud_paths(TEAMS, "AgentTeamDefinition", TEAM, schema(CreateAgentTeam),
                  schema(PatchAgentTeam)),
}
