"""Concurrent writers won every attempt of a write: 503 WRITE_CONFLICT with Retry-After, the one
error body, and nothing of the write stored."""

from __future__ import annotations

from typing import Any

import falcon.testing

from tests.engine.test_postgres_writers import install_always_conflict
from web.app import create_app
from web.settings import Settings


def test_retries_exhausted_answer_503_write_conflict_and_store_nothing(make_store: Any) -> None:
    location = make_store.location("postgresql")
    store = make_store.open("postgresql", location)
    install_always_conflict(location["database_url"])
    settings = Settings(provider="postgresql", database_url=location["database_url"])
    client = falcon.testing.TestClient(create_app(store, settings))
    body = {"name": "p", "category": "c", "promptContent": "hello"}
    resp = client.simulate_post("/rest/api/prompts", json=body)
    assert resp.status_code == 503, resp.text
    assert resp.json == {"code": "WRITE_CONFLICT", "detail": resp.json["detail"], "field": None}
    assert resp.headers["Retry-After"] == "1"
    assert client.simulate_get("/rest/api/prompts").json["items"] == []
    with store.begin() as txn:
        assert [k for k, _ in txn.scan() if b"prompts" in k] == []
