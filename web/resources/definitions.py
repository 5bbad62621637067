"""Agent definitions and agent team definitions."""

from __future__ import annotations

from typing import Any

import falcon

from domains.agent_definitions import codec as agent_codec
from domains.agent_teams import codec as team_codec
from web.context import AppContext
from web.http import query_bool
from web.resources.crud import CrudCollection, CrudItem
from web.resources.doc import (
    IF_MATCH,
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
from web.resources.prompts import PROMPT

AGENTS = "/rest/api/agent-definitions"
TEAMS = "/rest/api/agent-team-definitions"


class AgentDefinitionItem(CrudItem):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        if query_bool(req, "includePrompts"):
            detail = self._service.get_with_prompts(id)
            resp.media = agent_codec.detail_to_json(detail)
            # The tag of the definition itself: what PATCH and DELETE compare If-Match with.
            resp.etag = self._service.etag(detail.definition)
            return
        super().on_get(req, resp, id)


def add_routes(app: falcon.App, ctx: AppContext) -> None:
    agents = ctx.services.agent_definitions
    teams = ctx.services.agent_teams
    app.add_route(AGENTS, CrudCollection(ctx, AGENTS, agents, agent_codec.to_json))
    app.add_route(AGENTS + "/{id}", AgentDefinitionItem(ctx, agents, agent_codec.to_json))
    app.add_route(TEAMS, CrudCollection(ctx, TEAMS, teams, team_codec.to_json))
    app.add_route(TEAMS + "/{id}", CrudItem(ctx, teams, team_codec.to_json))


_LISTS = (
    "toolNames", "inputProcessorNames", "llmResponseProcessorNames",
    "systemPromptProcessorNames", "toolExecutionResultProcessorNames",
    "toolInvocationPreprocessorNames", "lifecycleProcessorNames", "skillNames",
)
AGENT = obj(
    {"id": STR, "name": STR, "role": STR, "description": STR, "avatarUrl": NSTR,
     **{name: STR_LIST for name in _LISTS},
     "systemPromptCategory": NSTR, "systemPromptName": NSTR, "createdAt": TIME, "updatedAt": TIME},
    ["id", "name", "role", "description", "avatarUrl", *_LISTS, "systemPromptCategory",
     "systemPromptName", "createdAt", "updatedAt"],
)
AGENT_DETAIL = dict(AGENT, properties=dict(AGENT["properties"],
                                           prompts={"type": "array", "items": PROMPT}))
AGENT_CREATE = obj(
    {"name": STR, "role": STR, "description": STR, "avatarUrl": NSTR,
     **{name: STR_LIST for name in _LISTS}, "systemPromptCategory": STR, "systemPromptName": STR},
    ["name", "role", "description", "systemPromptCategory", "systemPromptName"],
)
AGENT_PATCH = obj({k: v for k, v in AGENT_CREATE["properties"].items()})
NODE = obj({"memberName": STR, "referenceId": STR,
            "referenceType": {"type": "string", "enum": ["AGENT", "AGENT_TEAM"]}},
           ["memberName", "referenceId", "referenceType"])
TEAM = obj(
    {"id": STR, "name": STR, "description": STR, "role": NSTR, "avatarUrl": NSTR,
     "coordinatorMemberName": STR, "nodes": {"type": "array", "items": NODE},
     "createdAt": TIME, "updatedAt": TIME},
    ["id", "name", "description", "role", "avatarUrl", "coordinatorMemberName", "nodes",
     "createdAt", "updatedAt"],
)
TEAM_CREATE = obj(
    {"name": STR, "description": STR, "role": NSTR, "avatarUrl": NSTR,
     "coordinatorMemberName": STR, "nodes": {"type": "array", "items": NODE}},
    ["name", "description", "coordinatorMemberName"],
)
TEAM_PATCH = obj(dict(TEAM_CREATE["properties"]))
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
    **_crud_paths(AGENTS, "AgentDefinition", AGENT, AGENT_CREATE, AGENT_PATCH,
                  get_params=[query("includePrompts",
                                    {"type": "string", "enum": ["true", "false"]})],
                  get_record=AGENT_DETAIL),
    **_crud_paths(TEAMS, "AgentTeamDefinition", TEAM, TEAM_CREATE, TEAM_PATCH),
}
