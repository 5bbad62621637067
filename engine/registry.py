"""Provider selection: a registry of lazy loaders.

A backend's module is imported only when its provider is chosen, so the edge profile (lmdb, file)
never imports SQLAlchemy or psycopg and runs where neither is installed.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from engine import errors
from engine.interface import Store

DISTRIBUTION = "autobyteus-persistence"
SQL_INSTALL_COMMAND = (
    f"pip install '{DISTRIBUTION}[sql]'  (from a checkout: pip install -e '.[sql]')"
)

#: provider name -> "module:class"; the module is imported on first use only.
PROVIDERS: dict[str, str] = {
    "lmdb": "engine.backends.lmdb:LmdbStore",
    "file": "engine.backends.file.store:FileStore",
    "sqlite": "engine.backends.sql.sqlite:SqliteStore",
    "postgresql": "engine.backends.sql.postgresql:PostgresStore",
}
SQL_PROVIDERS = frozenset({"sqlite", "postgresql"})
DEFAULT_PROVIDER = "lmdb"
DEFAULT_DATA_DIR = "./data"

#: Modules whose absence means "the sql extra is not installed".
_SQL_MODULES = ("sqlalchemy", "psycopg")


def normalise_provider(provider: str | None) -> str:
    name = (provider or DEFAULT_PROVIDER).strip().lower()
    if name not in PROVIDERS:
        raise errors.ConfigurationError(
            f"PERSISTENCE_PROVIDER={provider!r} is not a provider; valid providers are: "
            + ", ".join(PROVIDERS)
        )
    return name


def load_backend(provider: str) -> type[Store]:
    """Import and return the Store class of ``provider``."""
    name = normalise_provider(provider)
    module_name, _, class_name = PROVIDERS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if name in SQL_PROVIDERS and missing in _SQL_MODULES:
            raise errors.ConfigurationError(
                f"the {name!r} provider needs the 'sql' extra ({missing} is not installed); "
                f"install it with: {SQL_INSTALL_COMMAND}"
            ) from exc
        raise
    cls: type[Store] = getattr(module, class_name)
    return cls


def normalise_database_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here, as the documentation of the setting says."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    return url


def open_store(
    provider: str | None = None,
    *,
    data_dir: str | None = None,
    database_url: str | None = None,
    readonly: bool = False,
    create: bool = True,
    **options: Any,
) -> Store:
    """Open (creating unless ``create=False``) the store of ``provider``.

    lmdb, file and sqlite live in ``<data_dir>/<provider>``; postgresql needs ``database_url``.
    """
    name = normalise_provider(provider)
    cls = load_backend(name)
    if name == "postgresql":
        if not database_url:
            raise errors.ConfigurationError(
                "PERSISTENCE_PROVIDER=postgresql needs AUTOBYTEUS_DATABASE_URL "
                "(postgresql+psycopg://user:password@host:port/database)"
            )
        url = normalise_database_url(database_url)
        return cls(url, readonly=readonly, create=create, **options)  # type: ignore[call-arg]
    path = os.path.join(data_dir or DEFAULT_DATA_DIR, name)
    return cls(path, readonly=readonly, create=create, **options)  # type: ignore[call-arg]

