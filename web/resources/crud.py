"""Collection and item resources for a service with create / get / update / delete / list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import falcon

from domains.common import Page
from web.context import AppContext
from web.http import if_match, query_text, read_command, send, send_page


class Record(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=Record)
C = TypeVar("C")
P = TypeVar("P")
R_co = TypeVar("R_co", bound=Record, covariant=True)
C_contra = TypeVar("C_contra", contravariant=True)
P_contra = TypeVar("P_contra", contravariant=True)


class CrudService(Protocol[R_co, C_contra, P_contra]):
    """What these resources call: typed commands in (C: create, P: patch), records out."""

    def list(self, *, limit: Any = None, cursor: str | None = None) -> Page[Any]: ...
    def create(self, command: C_contra) -> R_co: ...
    def get(self, record_id: str, /) -> R_co: ...
    def update(self, record_id: str, patch: P_contra, /,
               expected_etag: str | None = None) -> R_co: ...
    def delete(self, record_id: str, /, expected_etag: str | None = None) -> None: ...


class CrudCollection(Generic[R, C, P]):
    def __init__(self, ctx: AppContext, base: str, service: CrudService[R, C, P],
                 to_json: Callable[[R], Any], create: type[C]) -> None:
        self._ctx = ctx
        self._base = base
        self._service = service
        self._to_json = to_json
        self._create = create

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = self._service.list(limit=query_text(req, "limit"), cursor=query_text(req, "cursor"))
        send_page(resp, page, self._to_json)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        record = self._service.create(read_command(req, self._ctx.max_body, self._create))
        send(resp, self._to_json(record), falcon.HTTP_201, etag=True)
        resp.location = f"{self._base}/{record.id}"


class CrudItem(Generic[R, C, P]):
    def __init__(self, ctx: AppContext, service: CrudService[R, C, P],
                 to_json: Callable[[R], Any], patch: type[P]) -> None:
        self._ctx = ctx
        self._service = service
        self._to_json = to_json
        self._patch = patch

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        send(resp, self._to_json(self._service.get(id)), etag=True)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        patch = read_command(req, self._ctx.max_body, self._patch)
        record = self._service.update(id, patch, expected_etag=if_match(req))
        send(resp, self._to_json(record), etag=True)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self._service.delete(id, expected_etag=if_match(req))
        resp.status = falcon.HTTP_204
