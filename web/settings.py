"""The server's settings: one table, read from the environment (and flags), checked at start-up.

Each field of :class:`Settings` is one setting, declared once with :func:`setting`: variable,
type (the annotation), range or choices, default, value under the low-power preset, description,
secret or not. A bad value fails at start-up with a message that names the variable and what it
accepts. The README's configuration table is generated from this one:

    python -m web.settings --markdown        # print it
    python -m web.settings --update-readme   # rewrite it in README.md
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from engine import PROVIDERS
from web.settings_table import (
    PRESET_NAMES,
    Entry,
    SettingsError,
    check_all,
    entries,
    markdown_table,
    read,
    setting,
)

__all__ = ["PRESETS", "PRESET_VARIABLE", "Settings", "SettingsError", "TABLE"]

PRESET_VARIABLE = "AUTOBYTEUS_PRESET"
_TEN_YEARS_S = 10 * 365 * 86400


def _http_url(label: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{label}={value!r} is not an http(s) URL")


def parse_origins(raw: str | None) -> tuple[str, ...]:
    """``"*"`` or a comma list of origins (``scheme://host[:port]``), as a tuple; empty: off."""
    if raw is None or not raw.strip():
        return ()
    items = tuple(dict.fromkeys(o.strip().rstrip("/") for o in raw.split(",") if o.strip()))
    if "*" in items:
        if len(items) > 1:
            raise ValueError("'*' allows every origin and cannot be combined with others")
        return ("*",)
    for origin in items:
        scheme, sep, rest = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
            raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
    return items


def _origins(label: str, value: str) -> None:
    try:
        parse_origins(value)
    except ValueError as exc:
        raise SettingsError(f"{label}: {exc}; it accepts * or a comma list of origins such as "
                            "https://app.example.org") from None


@attrs.frozen
class Settings:
    # -- the store --
    preset: str = setting(
        PRESET_VARIABLE, "default",
        "a set of defaults: `low-power` for small boards (see \"Edge devices\"); variables and "
        "flags still win", choices=PRESET_NAMES, normalise=str.lower)
    provider: str = setting(
        "PERSISTENCE_PROVIDER", "lmdb", "the store's backend",
        choices=tuple(PROVIDERS), normalise=str.lower)
    data_dir: str = setting(
        "AUTOBYTEUS_DATA_DIR", "./data",
        "where lmdb, file and sqlite stores live (`<dir>/<provider>/`)")
    database_url: str | None = setting(
        "AUTOBYTEUS_DATABASE_URL", None,
        "PostgreSQL URL, `postgresql+psycopg://...` (`postgresql://` means psycopg 3 too)",
        secret=True)
    lmdb_map_size: int | None = setting(
        "AUTOBYTEUS_LMDB_MAP_SIZE", None, "initial LMDB map size (it grows by itself)",
        low=1 << 20, high=1 << 40, low_power=8 << 20, unit="bytes",
        shown_default="256 MiB on 64-bit, 16 MiB on 32-bit")
    # -- HTTP --
    api_token: str | None = setting(
        "AUTOBYTEUS_API_TOKEN", None, "bearer token required on `/rest/api/...` when set",
        secret=True)
    host: str = setting("AUTOBYTEUS_HOST", "127.0.0.1", "listening address", flag="--host")
    port: int = setting("AUTOBYTEUS_PORT", 8000, "listening port (0: any free port)",
                        low=0, high=65535, flag="--port")
    threads: int = setting("AUTOBYTEUS_THREADS", 8, "request threads",
                           low=1, high=256, low_power=2, flag="--threads")
    workers: int = setting(
        "AUTOBYTEUS_WORKERS", 1,
        "server processes sharing the port, each with its own threads and its own handle on the "
        "store (not with `file`); a worker that dies is restarted", low=1, high=64,
        flag="--workers")
    max_body_bytes: int = setting(
        "AUTOBYTEUS_MAX_BODY_BYTES", 1 << 20, "request body limit (413 beyond, nothing stored)",
        low=1024, high=1 << 30, unit="bytes")
    # -- limits under load and hostile clients (see web/serving.py) --
    max_inflight: int | None = setting(
        "AUTOBYTEUS_MAX_INFLIGHT", None,
        "requests held at once, being served or waiting for a thread; beyond it 503 `OVERLOADED`",
        low=1, high=100_000, shown_default="4 × threads")
    connection_limit: int = setting(
        "AUTOBYTEUS_CONNECTION_LIMIT", 100,
        "open connections served at once; beyond it new ones wait in the listen backlog",
        low=1, high=10_000)
    backlog: int = setting(
        "AUTOBYTEUS_BACKLOG", 128, "connections the kernel holds before they are accepted",
        low=1, high=65_535)
    channel_timeout_s: int = setting(
        "AUTOBYTEUS_CHANNEL_TIMEOUT_SECONDS", 30,
        "an idle connection, or one whose request has not fully arrived, is closed after this",
        low=1, high=3600, unit="seconds")
    max_header_bytes: int = setting(
        "AUTOBYTEUS_MAX_HEADER_BYTES", 64 << 10, "request line and headers (431 beyond)",
        low=1024, high=1 << 24, unit="bytes")
    # -- background work --
    ttl_sweep_interval_s: float = setting(
        "AUTOBYTEUS_TTL_SWEEP_INTERVAL_SECONDS", 60.0,
        "how often expired idempotency keys are purged", low=1, high=86400, low_power=600.0,
        unit="seconds")
    outbox_poll_interval_s: float = setting(
        "AUTOBYTEUS_OUTBOX_POLL_INTERVAL_SECONDS", 1.0,
        "how often the outbox worker looks for due replies when not woken (a queued reply "
        "wakes it at once)", low=1, high=3600, low_power=30.0, unit="seconds")
    # -- the external channel --
    gateway_shared_secret: str | None = setting(
        "CHANNEL_GATEWAY_SHARED_SECRET", None, "verifies ingress signatures when set",
        secret=True)
    callback_base_url: str | None = setting(
        "CHANNEL_CALLBACK_BASE_URL", None, "where replies are delivered (http or https)",
        check=_http_url)
    callback_shared_secret: str | None = setting(
        "CHANNEL_CALLBACK_SHARED_SECRET", None, "signs outbound callbacks when set", secret=True)
    callback_timeout_ms: int = setting(
        "CHANNEL_CALLBACK_TIMEOUT_MS", 5000, "callback request timeout",
        low=1, high=600_000, unit="ms")
    ingress_routed_disposition: str = setting(
        "CHANNEL_INGRESS_ROUTED_DISPOSITION", "ROUTED",
        "the disposition answered for a message routed to an agent",
        choices=("ROUTED", "ACCEPTED"), normalise=str.upper)
    ingress_idempotency_ttl_s: int = setting(
        "CHANNEL_INGRESS_IDEMPOTENCY_TTL_SECONDS", 3600,
        "how long an inbound message id is remembered (a redelivery inside it is a duplicate)",
        low=0, high=_TEN_YEARS_S, unit="seconds")
    callback_idempotency_ttl_s: int = setting(
        "CHANNEL_CALLBACK_IDEMPOTENCY_TTL_SECONDS", 3600,
        "how long a reply's callback idempotency key is remembered",
        low=0, high=_TEN_YEARS_S, unit="seconds")
    # -- operating the server (web/metrics.py, web/observe.py, web/logsetup.py, web/cors.py) --
    metrics_public: bool = setting(
        "AUTOBYTEUS_METRICS_PUBLIC", False,
        "`GET /metrics` answers without the API token (when one is set)")
    access_log: bool = setting(
        "AUTOBYTEUS_ACCESS_LOG", True,
        "one access-log line per request (logger `web.access`, level INFO)")
    log_level: str = setting(
        "AUTOBYTEUS_LOG_LEVEL", "INFO", "level of the server's log",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"), normalise=str.upper)
    log_format: str = setting(
        "AUTOBYTEUS_LOG_FORMAT", "text",
        "`text` (one readable line per event) or `json` (one JSON object per line)",
        choices=("text", "json"), normalise=str.lower)
    cors_origins: str | None = setting(
        "AUTOBYTEUS_CORS_ORIGINS", None,
        "origins whose pages may call the API from a browser: `*` or a comma list such as "
        "`https://app.example.org`; unset: CORS off", check=_origins)

    def __attrs_post_init__(self) -> None:
        check_all(TABLE, self)
        if self.workers > 1 and self.provider == "file":
            raise SettingsError(
                f"AUTOBYTEUS_WORKERS={self.workers}: the file provider is served by one process "
                "only (its store is held by one writer); use 1, or lmdb, sqlite or postgresql"
            )
        if self.provider == "postgresql":
            if not self.database_url:
                raise SettingsError(
                    "PERSISTENCE_PROVIDER=postgresql needs AUTOBYTEUS_DATABASE_URL "
                    "(postgresql+psycopg://user:password@host:port/database)"
                )
            if not self.database_url.startswith(("postgresql://", "postgresql+psycopg://",
                                                 "postgres://")):
                raise SettingsError(
                    "AUTOBYTEUS_DATABASE_URL must start with postgresql+psycopg:// or "
                    "postgresql://"
                )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        only: Collection[str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Settings from ``environ`` (default os.environ); ``overrides`` (flags, by field name)
        win where they are not None. ``only``: read just these fields, the rest keep their
        defaults (the tools read only where the store is)."""
        env = os.environ if environ is None else environ
        unknown = set(overrides) - set(FIELDS)
        if unknown:
            raise TypeError(f"no such setting: {', '.join(sorted(unknown))}")
        table = TABLE if only is None else [e for e in TABLE if e.name in only]
        preset = "default"
        if FIELDS["preset"] in table:
            preset = read([FIELDS["preset"]], env, overrides, preset)["preset"]
        return cls(**read(table, env, overrides, preset))

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """The allowed origins (``("*",)``: any); empty: CORS off."""
        return parse_origins(self.cors_origins)

    @property
    def inflight_limit(self) -> int:
        """AUTOBYTEUS_MAX_INFLIGHT, or 4 requests per thread: one served, three waiting."""
        return self.max_inflight if self.max_inflight is not None else 4 * self.threads

    def domain_options(self) -> dict[str, Any]:
        """What the domain services are configured with (no HTTP in it)."""
        return {
            "ingress_idempotency_ttl_s": self.ingress_idempotency_ttl_s,
            "callback_idempotency_ttl_s": self.callback_idempotency_ttl_s,
            "callback_configured": self.callback_base_url is not None,
            "ingress_routed_disposition": self.ingress_routed_disposition,
            # For the channel outbox worker (the one domain worker that talks HTTP).
            "callback_base_url": self.callback_base_url,
            "callback_shared_secret": self.callback_shared_secret,
            "callback_timeout_ms": self.callback_timeout_ms,
            "outbox_poll_interval_s": self.outbox_poll_interval_s,
        }

    def store_options(self) -> dict[str, Any]:
        """Where the store is and how it opens: arguments for engine.open_store()."""
        options: dict[str, Any] = {"data_dir": self.data_dir, "database_url": self.database_url}
        if self.provider == "lmdb" and self.lmdb_map_size:
            options["map_size"] = self.lmdb_map_size
        if self.provider == "lmdb" and self.workers > 1:
            # Several processes write: each gives the writers' lock up between its batches.
            options["multiprocess"] = True
        return options


#: The table, in declaration order, and by field name.
TABLE: list[Entry] = entries(Settings)
FIELDS: dict[str, Entry] = {entry.name: entry for entry in TABLE}
#: Each preset's values (only defaults change; a variable or a flag still wins).
PRESETS: dict[str, dict[str, Any]] = {
    name: {e.name: e.spec.presets[name] for e in TABLE if name in e.spec.presets}
    for name in PRESET_NAMES
}

# -- the README's table ----------------------------------------------------------------------------
README = Path(__file__).resolve().parents[1] / "README.md"
README_START = "<!-- settings table: generated by `python -m web.settings --update-readme` -->"
README_END = "<!-- end of the settings table -->"


def readme_with_table(text: str) -> str:
    """``text`` (the README) with the block between the markers replaced by the table."""
    head, start, rest = text.partition(README_START)
    _, end, tail = rest.partition(README_END)
    if not start or not end:
        raise ValueError(f"the README has no block between {README_START!r} and {README_END!r}")
    return f"{head}{README_START}\n{markdown_table(TABLE)}{README_END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web.settings",
                                     description="The settings table, as Markdown.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="print the table")
    group.add_argument("--update-readme", action="store_true",
                       help=f"rewrite the table in {README.name}")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table(TABLE))
    else:
        README.write_text(readme_with_table(README.read_text(encoding="utf-8")),
                          encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
