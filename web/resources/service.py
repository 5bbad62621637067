"""GET /health and GET /openapi.json."""

from __future__ import annotations

from typing import Any

import falcon

from engine import errors as engine_errors
from web.context import AppContext
from web.errors import error_body


class HealthResource:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        store = self._ctx.store
        try:
            with store.begin() as txn:
                txn.get(b"")  # proves the store answers a read
        except engine_errors.EngineError:
            resp.status = falcon.HTTP_503
            resp.set_header("Retry-After", "1")
            resp.media = error_body("BACKEND_UNAVAILABLE", "the store does not answer", None)
            return
        meta = store.metadata
        resp.media = {
            "status": "ok",
            "provider": store.provider,
            "formatVersion": meta.get("format_version"),
            "workers": self._ctx.settings.workers,
        }


class OpenApiResource:
    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._document


def add_routes(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/health", HealthResource(ctx))


PATHS: dict[str, Any] = {
    "/health": {
        "get": {
            "summary": "Liveness and the store's provider",
            "operationId": "health",
            "security": [],
            "responses": {
                "200": {
                    "description": "the server and its store answer",
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["status", "provider"],
                        "properties": {
                            "status": {"type": "string", "enum": ["ok"]},
                            "provider": {"type": "string",
                                         "enum": ["lmdb", "file", "sqlite", "postgresql"]},
                            "formatVersion": {"type": ["integer", "null"]},
                            "workers": {"type": "integer", "minimum": 1,
                                        "description": "server processes serving this port"},
                        },
                    }}},
                },
                "503": {"$ref": "#/components/responses/Error"},
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "security": [],
            "responses": {"200": {"description": "the OpenAPI 3.1 document",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        }
    },
}
