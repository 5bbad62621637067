"""The OpenAPI 3.1 document, assembled from the ``PATHS`` that each resource module declares
beside its routes, and the list of routes an app really serves (to prove the two agree)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import falcon

ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "detail", "field"],
    "properties": {
        "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
        "detail": {"type": "string"},
        "field": {"type": ["string", "null"]},
    },
}

COMPONENTS: dict[str, Any] = {
    "schemas": {"Error": ERROR_SCHEMA},
    "responses": {
        "Error": {
            "description": "an error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    },
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "parameters": {
        # Given empty (?limit=), it counts as absent: the default.
        "limit": {"name": "limit", "in": "query", "required": False,
                  "schema": {"anyOf": [
                      {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                      {"type": "string", "maxLength": 0}]}},
        # Opaque: only a nextCursor this server answered is one; anything else is 400 with
        # field "cursor". No schema can say "issued by this server", so the description does.
        "cursor": {"name": "cursor", "in": "query", "required": False,
                   "description": "opaque: a nextCursor this server answered, as given "
                                  "(anything else is refused with 400, field cursor)",
                   "schema": {"type": "string"}},
        "ifMatch": {"name": "If-Match", "in": "header", "required": False,
                    "description": "opaque: the ETag this server answered for the record "
                                   "(another one is refused with 412)",
                    "schema": {"type": "string"}},
    },
}

_METHODS = ("get", "put", "post", "delete", "patch")


ERROR_RESPONSE = {"$ref": "#/components/responses/Error"}


def _add_implied_responses(method: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    # Any request may be shed under load (503 OVERLOADED with Retry-After) or meet an
    # unavailable store (503 BACKEND_UNAVAILABLE, STORE_BUSY, WRITE_CONFLICT, ...).
    responses.setdefault("503", copy.deepcopy(ERROR_RESPONSE))
    if method != "get":
        # A write may find the store out of space.
        responses.setdefault("507", copy.deepcopy(ERROR_RESPONSE))


def _components() -> dict[str, Any]:
    from web.resources.doc import components  # the shapes the loaded resource modules name

    found = copy.deepcopy(COMPONENTS)
    found["schemas"].update(copy.deepcopy(components()))
    return found


def build_document(modules: Iterable[ModuleType], version: str = "0.1.0", *,
                   secured: bool = True) -> dict[str, Any]:
    """The OpenAPI document. ``secured``: a bearer token is configured, so the document says
    that the API needs it (operations that say ``security: []`` never do)."""
    paths: dict[str, Any] = {}
    for module in modules:
        for path, operations in module.PATHS.items():
            paths.setdefault(path, {}).update(copy.deepcopy(operations))
    for operations in paths.values():
        for method, operation in operations.items():
            if method in _METHODS:
                _add_implied_responses(method, operation)
                if not secured and "security" not in operation:
                    operation.get("responses", {}).pop("401", None)  # no token, no 401
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "autobyteus persistence server",
            "version": version,
            "description": "Persistent state of an agent platform: prompts, agent and team "
            "definitions, MCP server configurations, token usage, artifacts and external "
            "channels. Query parameters an operation does not name are ignored.",
        },
        "paths": dict(sorted(paths.items())),
        "components": _components(),
    }
    if secured:
        document["security"] = [{"bearer": []}]
    return document


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
        if method in _METHODS
    }


def served_routes(app: falcon.App) -> set[tuple[str, str]]:
    """(URI template, METHOD) for every responder the app's router holds."""
    found: set[tuple[str, str]] = set()

    def walk(nodes: list[Any]) -> None:
        for node in nodes:
            if node.resource is not None and node.method_map:
                for method, responder in node.method_map.items():
                    # Falcon fills unhandled methods with its own 405 responder.
                    if getattr(responder, "__self__", None) is node.resource:
                        found.add((node.uri_template, method))
            walk(node.children)

    walk(app._router._roots)  # type: ignore[attr-defined]
    return found
