"""Web fixtures: an app over a fresh lmdb store, driven through falcon.testing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import falcon.testing
import pytest

from web.app import create_app
from web.settings import Settings


@pytest.fixture
def make_client(make_store: Any) -> Iterator[Callable[..., falcon.testing.TestClient]]:
    def make(provider: str = "lmdb", **settings: Any) -> falcon.testing.TestClient:
        location = make_store.location(provider)
        store = make_store.open(provider, location)
        # The settings name the store the app serves (a postgresql one needs its URL).
        app = create_app(store, Settings(provider=provider, **location, **settings))
        return falcon.testing.TestClient(app)

    yield make


@pytest.fixture
def client(make_client: Callable[..., falcon.testing.TestClient]) -> falcon.testing.TestClient:
    return make_client()
