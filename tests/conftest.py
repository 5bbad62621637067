"""Shared fixtures: a fresh store of any provider, and the throwaway PostgreSQL cluster.

``make_store(provider)`` opens a new, empty store; ``store_factory`` is the same, bound to the
provider the test is parametrised with (``backend`` fixture: lmdb, file, sqlite, postgresql).
PostgreSQL runs as a real server that the tests start in a temporary directory (tests/pgcluster.py);
set AUTOBYTEUS_TEST_DATABASE_URL to use an existing server instead.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine import Store, open_store

ALL_PROVIDERS = ("lmdb", "file", "sqlite", "postgresql")
_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    from tests.pgcluster import PgCluster

    cluster = PgCluster.from_env_or_start()
    try:
        yield cluster
    finally:
        cluster.stop()


class StoreMaker:
    """Opens fresh stores and remembers where, so a test can reopen the same one."""

    def __init__(self, tmp_path: Any, request: pytest.FixtureRequest) -> None:
        self._tmp_path = tmp_path
        self._request = request
        self._opened: list[Store] = []

    def location(self, provider: str) -> dict[str, Any]:
        """Arguments for open_store() naming a new, empty store of ``provider``."""
        n = next(_db_counter)
        if provider == "postgresql":
            cluster = self._request.getfixturevalue("pg_cluster")
            return {"database_url": cluster.create_database(f"t{os.getpid()}_{n}")}
        return {"data_dir": str(self._tmp_path / f"store{n}")}

    def open(self, provider: str, location: dict[str, Any] | None = None, **options: Any) -> Store:
        loc = self.location(provider) if location is None else location
        store = open_store(provider, **loc, **options)
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self._opened:
            try:
                store.close()
            except Exception:
                pass


@pytest.fixture
def make_store(tmp_path: Any, request: pytest.FixtureRequest) -> Iterator[StoreMaker]:
    maker = StoreMaker(tmp_path, request)
    yield maker
    maker.close_all()


@pytest.fixture(params=ALL_PROVIDERS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(backend: str, make_store: StoreMaker) -> Callable[..., Store]:
    def factory(**options: Any) -> Store:
        return make_store.open(backend, **options)

    return factory


@pytest.fixture
def store(store_factory: Callable[..., Store]) -> Store:
    return store_factory()
