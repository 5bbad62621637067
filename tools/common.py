"""What the tools share: exit codes, store selection, bytes in JSON, progress.

The tools work on raw engine data: every key is classified by the index layer's key layout alone
(:func:`engine.indexes.layout.classify`), so dump, stats, load and migrate work whether or not the
domain packages import. Domain collections are used only where a tool needs record semantics
(check, and rebuilding indexes after a load), and only when they import (see
:mod:`tools.domainsupport`).
"""

from __future__ import annotations

import base64
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from engine import Store, Transaction, errors
from engine.indexes import transact
from engine.registry import PROVIDERS, normalise_database_url
from web import app as composition
from web.settings import Settings, SettingsError

# -- exit codes (documented in the README's "Tools" section and in ``--help``) -----------------
EXIT_OK = 0
EXIT_PROBLEMS = 1  # check found problems; load/repair finished but left problems to resolve
EXIT_USAGE = 2  # bad arguments or configuration (unknown provider, missing URL, no such file)
EXIT_STORE_MISSING = 3  # the store to read does not exist
EXIT_STORE_LOCKED = 4  # the store is locked or busy (another holder of a needed lock)
EXIT_DUMP_CORRUPT = 5  # the dump is truncated, altered or not a dump; nothing was written
EXIT_NOT_EMPTY = 6  # the target store (or backup destination) is not empty; see --force
EXIT_UNSUPPORTED = 7  # the operation does not exist for this provider (backup of postgresql)
EXIT_VERIFY_FAILED = 8  # the copy reads back different from the source
EXIT_STORE_ERROR = 9  # any other store failure: corrupt store, backend unavailable, I/O error
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (dump | head)

EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  problems found (check; load or check --repair left problems to resolve)
  2  usage or configuration error
  3  store missing
  4  store locked or busy
  5  dump corrupt, truncated or altered (refused before any write)
  6  target not empty (load/migrate: use --force; backup: choose an empty destination)
  7  not supported for this provider (backup of postgresql: use pg_dump)
  8  verification failed: the copy reads back different from the source
  9  other store error (corrupt store, backend unavailable, I/O)
"""


class ToolError(Exception):
    """A failure the tool reports as one line on stderr, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def exit_code_of(exc: BaseException) -> int:
    """The exit code of an engine error (the one place where they are mapped)."""
    if isinstance(exc, ToolError):
        return exc.code
    if isinstance(exc, errors.ConfigurationError):
        return EXIT_USAGE
    if isinstance(exc, errors.StoreNotFoundError):
        return EXIT_STORE_MISSING
    if isinstance(exc, errors.StoreLockedError):
        return EXIT_STORE_LOCKED
    return EXIT_STORE_ERROR


# -- store selection ---------------------------------------------------------------------------
#: The settings that say which store the tools open (the server's own, web/settings.py).
STORE_SETTINGS = ("provider", "data_dir", "database_url")


@dataclass(frozen=True)
class Location:
    """A store as the tools name it: a provider and where it lives."""

    provider: str
    data_dir: str | None = None
    database_url: str | None = None

    @classmethod
    def resolve(
        cls,
        provider: str | None,
        data_dir: str | None,
        database_url: str | None,
        environ: Mapping[str, str] | None = None,
    ) -> Location:
        """Flags win over PERSISTENCE_PROVIDER, AUTOBYTEUS_DATA_DIR, AUTOBYTEUS_DATABASE_URL,
        read as the server reads them (web/settings.py)."""
        try:
            settings = Settings.from_env(
                environ, only=STORE_SETTINGS,
                provider=provider, data_dir=data_dir, database_url=database_url)
        except SettingsError as exc:
            raise ToolError(str(exc), EXIT_USAGE) from exc
        if settings.provider == "postgresql":
            return cls(settings.provider, database_url=settings.database_url)
        return cls(settings.provider, data_dir=settings.data_dir)

    def settings(self) -> Settings:
        """The server's settings naming this store (everything else at its default)."""
        if self.data_dir is None:
            return Settings(provider=self.provider, database_url=self.database_url)
        return Settings(provider=self.provider, data_dir=self.data_dir,
                        database_url=self.database_url)

    @property
    def path(self) -> str | None:
        """The store's directory (lmdb, file, sqlite), as open_store derives it."""
        if self.data_dir is None:
            return None
        return os.path.join(self.data_dir, self.provider)

    def same_as(self, other: Location) -> bool:
        if self.provider != other.provider:
            return False
        if self.provider == "postgresql":
            return normalise_database_url(self.database_url or "") == normalise_database_url(
                other.database_url or ""
            )
        return os.path.realpath(self.path or "") == os.path.realpath(other.path or "")

    def describe(self) -> str:
        if self.provider == "postgresql":
            return f"postgresql store {hide_password(self.database_url or '')}"
        return f"{self.provider} store at {self.path}"

    def open(self, *, readonly: bool, create: bool = False) -> Store:
        """Open the store; readonly opens never create it (a missing store is exit code 3)."""
        try:
            return composition.open_store(
                self.settings(), readonly=readonly, create=create and not readonly)
        except errors.StoreNotFoundError as exc:
            raise ToolError(f"no store: {self.describe()} does not exist ({exc})",
                            EXIT_STORE_MISSING) from exc
        except errors.StoreLockedError as exc:
            raise ToolError(f"{self.describe()} is locked: {exc}", EXIT_STORE_LOCKED) from exc


def hide_password(url: str) -> str:
    try:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        pass
    return url


def providers_text() -> str:
    return ", ".join(PROVIDERS)


def is_empty(store: Store) -> bool:
    with store.begin() as txn:
        return next(iter(txn.scan(limit=1)), None) is None


def erase(store: Store, batch_size: int = 1000) -> int:
    """Delete every key, in batches of short write transactions; returns how many."""
    n = 0
    def erase_batch(txn: Transaction) -> list[bytes]:
        doomed = [k for k, _ in txn.scan(limit=batch_size)]
        for k in doomed:
            txn.delete(k)
        return doomed

    while True:
        doomed = transact(store, erase_batch)  # postgresql: a concurrent writer may conflict
        n += len(doomed)
        if len(doomed) < batch_size:
            return n


# -- bytes in JSON -------------------------------------------------------------------------------
def encode_bytes(data: bytes) -> str | dict[str, str]:
    """Bytes as JSON: the text when they are UTF-8 (exact: decoding valid UTF-8 and encoding it
    again gives the same bytes), else ``{"base64": ...}`` (the file backend's convention)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def decode_bytes(obj: Any) -> bytes:
    """The inverse of :func:`encode_bytes`; ValueError on anything else."""
    if isinstance(obj, str):
        return obj.encode("utf-8")  # a lone surrogate (not from encode_bytes) raises
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(obj.get("base64"), str):
        return base64.b64decode(obj["base64"], validate=True)
    raise ValueError(f"not an encoded key or value: {obj!r:.60}")


def json_element(value: Any) -> Any:
    """A decoded key element as JSON (bytes elements as {"base64": ...})."""
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    return value


def now_us() -> int:
    return int(time.time() * 1_000_000)


# -- output helpers -------------------------------------------------------------------------------
class Progress:
    """A one-line counter on stderr, redrawn at most a few times a second (only if enabled)."""

    def __init__(self, label: str, enabled: bool, stream: TextIO | None = None) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.n = 0
        self._last = 0.0
        self._shown = False

    def tick(self, n: int = 1) -> None:
        self.n += n
        if not self.enabled:
            return
        t = time.monotonic()
        if t - self._last >= 0.25:
            self._last = t
            self.stream.write(f"\r{self.label}: {self.n} keys")
            self.stream.flush()
            self._shown = True

    def done(self) -> None:
        if self._shown:
            self.stream.write(f"\r{self.label}: {self.n} keys\n")
            self.stream.flush()


def progress_wanted(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
