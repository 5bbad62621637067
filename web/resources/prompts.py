"""Prompts: /rest/api/prompts, revisions, activation, categories and template resolution."""

from __future__ import annotations

from typing import Any

import falcon

from domains.prompts import codec
from domains.prompts.commands import CreatePrompt, PatchPrompt, RevisePrompt
from domains.prompts.models import CategoryNames, Prompt
from domains.shapes import Choice, Text
from web.context import AppContext
from web.http import (
    AnswerMemo,
    if_match,
    query_checked,
    query_text,
    read_command,
    send,
    send_page,
    send_stored,
)
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

BASE = "/rest/api/prompts"
#: ?isActive= of the list: true or false, any case.
IS_ACTIVE = Choice(("true", "false"), case_insensitive=True)


class PromptCollection:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._prompts = ctx.services.prompts

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = self._prompts.list(
            name=query_text(req, "name"),
            category=query_text(req, "category"),
            is_active=query_checked(req, "isActive", IS_ACTIVE),
            limit=query_text(req, "limit"),
            cursor=query_text(req, "cursor"),
        )
        send_page(resp, page, codec.to_json)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        prompt = self._prompts.create(read_command(req, self._ctx.max_body, CreatePrompt))
        send(resp, codec.to_json(prompt), falcon.HTTP_201, etag=True)
        resp.location = f"{BASE}/{prompt.id}"


class PromptItem:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._prompts = ctx.services.prompts
        self._answers = AnswerMemo()

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        send_stored(resp, self._prompts.get_stored(id), codec.json_from_bytes, self._answers)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        patch = read_command(req, self._ctx.max_body, PatchPrompt)
        prompt = self._prompts.update(id, patch, expected_etag=if_match(req))
        send(resp, codec.to_json(prompt), etag=True)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self._prompts.delete(id, expected_etag=if_match(req))
        resp.status = falcon.HTTP_204


class PromptRevisions:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._prompts = ctx.services.prompts

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        command = read_command(req, self._ctx.max_body, RevisePrompt)
        prompt = self._prompts.create_revision(id, command)
        send(resp, codec.to_json(prompt), falcon.HTTP_201, etag=True)
        resp.location = f"{BASE}/{prompt.id}"


class PromptActivation:
    def __init__(self, ctx: AppContext) -> None:
        self._prompts = ctx.services.prompts

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        prompt = self._prompts.activate(id, expected_etag=if_match(req))
        send(resp, codec.to_json(prompt), etag=True)


class PromptCategories:
    def __init__(self, ctx: AppContext) -> None:
        self._prompts = ctx.services.prompts

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, codec.categories_to_json(self._prompts.categories()))


class PromptTemplates:
    def __init__(self, ctx: AppContext) -> None:
        self._prompts = ctx.services.prompts

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        prompt = self._prompts.resolve_template(
            query_text(req, "name"), query_text(req, "category"), query_text(req, "model")
        )
        send(resp, codec.to_json(prompt), etag=True)


def add_routes(app: falcon.App, ctx: AppContext) -> None:
    app.add_route(BASE, PromptCollection(ctx))
    app.add_route(BASE + "/{id}", PromptItem(ctx))
    app.add_route(BASE + "/{id}/revisions", PromptRevisions(ctx))
    app.add_route(BASE + "/{id}/activate", PromptActivation(ctx))
    app.add_route("/rest/api/prompt-categories", PromptCategories(ctx))
    app.add_route("/rest/api/prompt-templates", PromptTemplates(ctx))


PROMPT = schema(Prompt)
ID = [path_param("id")]

PATHS: dict[str, Any] = {
    BASE: {
        "get": op("listPrompts", "List prompts (category, name asc; version desc)",
                  {"200": json_body(page_of(PROMPT))},
                  params=[query("name"), query("category"), query("isActive", IS_ACTIVE),
                          *LIST_PARAMS]),
        "post": op("createPrompt", "Create a prompt (version = family's highest + 1)",
                   {"201": json_body(PROMPT)}, body=schema(CreatePrompt),
                   errors=("400", "409", "413", "415")),
    },
    BASE + "/{id}": {
        "get": op("getPrompt", "One prompt", {"200": json_body(PROMPT)}, params=ID,
                  errors=("404",)),
        "patch": op("updatePrompt", "Change a prompt's fields (version never changes)",
                    {"200": json_body(PROMPT)}, body=schema(PatchPrompt), params=[*ID, IF_MATCH],
                    errors=("400", "404", "409", "412", "413", "415")),
        "delete": op("deletePrompt", "Delete a prompt (no cascade)",
                     {"204": {"description": "deleted"}}, params=[*ID, IF_MATCH],
                     errors=("404", "412")),
    },
    BASE + "/{id}/revisions": {
        "post": op("createPromptRevision", "A new revision in the prompt's family",
                   {"201": json_body(PROMPT)}, body=schema(RevisePrompt),
                   params=ID, errors=("400", "404", "409", "413", "415")),
    },
    BASE + "/{id}/activate": {
        "post": op("activatePrompt", "Make this the family's one active prompt",
                   {"200": json_body(PROMPT)}, params=[*ID, IF_MATCH], errors=("404", "412")),
    },
    "/rest/api/prompt-categories": {
        "get": op("promptCategories", "Categories of active prompts with their names",
                  {"200": json_body({"type": "array", "items": schema(CategoryNames)})},
                  errors=()),
    },
    "/rest/api/prompt-templates": {
        "get": op("resolvePromptTemplate", "The active prompt for a name, category and model",
                  {"200": json_body(PROMPT)},
                  params=[query("name", Text(), required=True),
                          query("category", Text(), required=True),
                          query("model", Text(), required=True)],
                  errors=("400", "404")),
    },
}
