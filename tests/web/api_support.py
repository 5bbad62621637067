"""Helpers shared by the per-area HTTP tests: a controllable clock, an app over a fresh lmdb store,
the error-body check, the timestamp shape and a walk over a list's pages."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import falcon.testing

from web.app import create_app
from web.settings import Settings

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ANY_FIELD = object()
START = dt.datetime(2026, 2, 22, 10, 15, 30, 123_000, tzinfo=dt.UTC)


class ManualClock:
    """What the services read as "now": it moves only when a test moves it."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def tick(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta) if delta else dt.timedelta(seconds=1)
        return self.now

    def set(self, when: dt.datetime) -> dt.datetime:
        self.now = when
        return when


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{when.microsecond // 1000:03d}Z"


def make_api(make_store: Any, clock: ManualClock | None = None,
             **settings: Any) -> falcon.testing.TestClient:
    store = make_store.open("lmdb")
    app = create_app(store, Settings(provider="lmdb", **settings), clock=clock)
    return falcon.testing.TestClient(app)


def assert_error(result: falcon.testing.Result, status: int, code: str | None = None,
                 field: Any = ANY_FIELD) -> dict[str, Any]:
    """The answer is ``status`` with exactly the error body ``{code, detail, field}``."""
    assert result.status_code == status, (result.status_code, result.text)
    body = result.json
    assert isinstance(body, dict) and set(body) == {"code", "detail", "field"}, body
    assert isinstance(body["code"], str) and re.fullmatch(r"[A-Z][A-Z0-9_]*", body["code"]), body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert body["field"] is None or isinstance(body["field"], str), body
    if code is not None:
        assert body["code"] == code, body
    if field is not ANY_FIELD:
        assert body["field"] == field, body
    return body


def assert_timestamps(document: dict[str, Any], *names: str) -> None:
    for name in names or ("createdAt", "updatedAt"):
        assert isinstance(document[name], str) and TS.match(document[name]), (name, document)


def created(result: falcon.testing.Result, base: str | None = None) -> dict[str, Any]:
    """A 201 with a Location (under ``base`` when given); the body."""
    assert result.status_code == 201, result.text
    location = result.headers.get("location")
    assert location, result.headers
    if base is not None:
        assert location.startswith(base), (location, base)
    return result.json


def walk(client: falcon.testing.TestClient, path: str, limit: int,
         params: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list, following nextCursor; (items, number of pages)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = dict(params or {}, limit=str(limit))
        if cursor is not None:
            query["cursor"] = cursor
        result = client.simulate_get(path, params=query)
        assert result.status_code == 200, result.text
        page = result.json
        assert set(page) == {"items", "nextCursor"}, page
        assert len(page["items"]) <= limit
        pages += 1
        items += page["items"]
        cursor = page["nextCursor"]
        if cursor is None:
            return items, pages
        assert isinstance(cursor, str) and cursor
        assert pages < 10_000


def first_page(client: falcon.testing.TestClient, path: str,
               params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    result = client.simulate_get(path, params=params or {})
    assert result.status_code == 200, result.text
    assert set(result.json) == {"items", "nextCursor"}, result.json
    assert result.json["nextCursor"] is None
    return result.json["items"]


def raw_post(client: falcon.testing.TestClient, method: str, path: str,
             body: bytes) -> falcon.testing.Result:
    return client.simulate_request(method, path, body=body,
                                   headers={"Content-Type": "application/json"})
