"""Web fixtures: an app over a fresh lmdb store, driven through falcon.testing."""

from __future__ import annotations

import logging
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


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A test that runs the server's main() in process configures logging (web/logsetup.py: the
    access logger stops propagating); put it back, so that later tests' caplog sees every line."""
    from web import logsetup

    root, access = logging.getLogger(), logging.getLogger("web.access")
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate)
             for logger in (root, access)]
    writer = logsetup.access_writer
    yield
    logsetup.access_writer = writer
    for logger, handlers, level, propagate in saved:
        for handler in logger.handlers[:]:
            if handler not in handlers:
                logger.removeHandler(handler)
                handler.close()
        logger.setLevel(level)
        logger.propagate = propagate
