"""GET /health and GET /openapi.json."""

from __future__ import annotations

from typing import Any

import attrs
import falcon

from domains.shapes import Choice, Integer, camel, wire
from engine import PROVIDERS
from engine import errors as engine_errors
from web.context import AppContext
from web.errors import error_body
from web.resources.doc import schema


@attrs.frozen
class Health:
    """The answer of GET /health."""

    status: str = wire(Choice(("ok",)))
    provider: str = wire(Choice(tuple(PROVIDERS)))
    #: Server processes serving this port (``--workers``).
    workers: int = wire(Integer(minimum=1))
    format_version: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {camel(name): value for name, value in attrs.asdict(self).items()}


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
        resp.media = Health("ok", store.provider, workers=self._ctx.settings.workers,
                             format_version=meta.get("format_version")).to_json()


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
                    "content": {"application/json": {"schema": schema(Health)}},
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
