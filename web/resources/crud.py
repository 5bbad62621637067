"""Collection and item resources for a service with create / get / update / delete / list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from web.context import AppContext
from web.http import if_match, query_text, read_object, send, send_page


class CrudCollection:
    def __init__(self, ctx: AppContext, base: str, service: Any,
                 to_json: Callable[[Any], Any]) -> None:
        self._ctx = ctx
        self._base = base
        self._service = service
        self._to_json = to_json

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = self._service.list(limit=query_text(req, "limit"), cursor=query_text(req, "cursor"))
        send_page(resp, page, self._to_json)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        record = self._service.create(read_object(req, self._ctx.max_body))
        send(resp, self._to_json(record), falcon.HTTP_201, etag=True)
        resp.location = f"{self._base}/{record.id}"


class CrudItem:
    def __init__(self, ctx: AppContext, service: Any, to_json: Callable[[Any], Any]) -> None:
        self._ctx = ctx
        self._service = service
        self._to_json = to_json

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        send(resp, self._to_json(self._service.get(id)), etag=True)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        patch = read_object(req, self._ctx.max_body)
        record = self._service.update(id, patch, expected_etag=if_match(req))
        send(resp, self._to_json(record), etag=True)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self._service.delete(id, expected_etag=if_match(req))
        resp.status = falcon.HTTP_204
