"""One settings object, read from the environment (and command-line flags), validated at startup.

A bad value fails at startup with a message that names the variable and what it accepts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from engine.registry import DEFAULT_DATA_DIR, DEFAULT_PROVIDER, PROVIDERS


class SettingsError(ValueError):
    """A setting has a value this server does not accept."""


# -- presets ------------------------------------------------------------------------------------
#: Named sets of defaults chosen with AUTOBYTEUS_PRESET. A preset only changes defaults: a
#: variable set explicitly, or a command-line flag, still wins over it.
PRESET_VARIABLE = "AUTOBYTEUS_PRESET"
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # Low-power boards (Raspberry Pi class, 512 MB, 32-bit): fewer request threads, a small LMDB
    # map to start (it grows by itself), background workers that wake up rarely.
    "low-power": {
        "threads": 2,
        "lmdb_map_size": 8 << 20,
        "ttl_sweep_interval_s": 600.0,
        "outbox_poll_interval_s": 30.0,
    },
}


@attrs.frozen
class Settings:
    provider: str = DEFAULT_PROVIDER
    data_dir: str = DEFAULT_DATA_DIR
    database_url: str | None = None
    api_token: str | None = attrs.field(default=None, repr=False)
    gateway_shared_secret: str | None = attrs.field(default=None, repr=False)
    callback_base_url: str | None = None
    callback_shared_secret: str | None = attrs.field(default=None, repr=False)
    callback_timeout_ms: int = 5000
    ingress_routed_disposition: str = "ROUTED"
    ingress_idempotency_ttl_s: int = 3600
    callback_idempotency_ttl_s: int = 3600
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = 8
    max_body_bytes: int = 1 << 20
    ttl_sweep_interval_s: float = 60.0
    lmdb_map_size: int | None = None
    #: How often the channel outbox worker looks for due replies when nothing woke it.
    outbox_poll_interval_s: float = 1.0
    #: The preset whose defaults were applied (see PRESETS).
    preset: str = "default"
    # -- limits under load and hostile clients (see web/serving.py) --
    #: Requests the server holds at once (being served or waiting for a thread); beyond it a
    #: request is answered 503 OVERLOADED with Retry-After. None: 4 x threads.
    max_inflight: int | None = None
    #: Open connections waitress serves at once; beyond it new ones wait in the listen backlog.
    connection_limit: int = 100
    #: The listen backlog: connections the kernel holds before waitress accepts them.
    backlog: int = 128
    #: An idle connection, or one whose request has not fully arrived, is closed after this.
    channel_timeout_s: int = 30
    #: The request line plus headers; beyond it waitress answers 431.
    max_header_bytes: int = 64 << 10
    # -- operating the server (issue 18: web/metrics.py, web/observe.py, web/logsetup.py,
    # web/cors.py) --
    #: GET /metrics answers without the API token (when one is set).
    metrics_public: bool = False
    #: One access-log line per request (logger web.access, level INFO).
    access_log: bool = True
    #: Level of the server's log: DEBUG, INFO, WARNING or ERROR.
    log_level: str = "INFO"
    #: ``text`` (one readable line per event) or ``json`` (one JSON object per line).
    log_format: str = "text"
    #: Origins whose pages may call the API from a browser (``("*",)``: any); empty: CORS off.
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Settings from ``environ`` (default os.environ); ``overrides`` (flags) win."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(name)
            if value is None or not value.strip():
                return None
            return value.strip()

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(
                    f"{name}={raw!r} is not an integer; it accepts {low}..{high}"
                ) from None
            if not low <= value <= high:
                raise SettingsError(f"{name}={value} is out of range; it accepts {low}..{high}")
            return value

        # -- operating the server (issue 18): switches and the CORS origins --
        def flag(name: str, default: bool) -> bool:
            raw = text(name)
            if raw is None:
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise SettingsError(f"{name}={raw!r} is not a switch; it accepts 1 or 0")

        def origins(name: str) -> tuple[str, ...]:
            from web.cors import parse_origins

            try:
                return parse_origins(text(name))
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}; it accepts * or a comma list of "
                                    "origins such as https://app.example.org") from None

        preset_name = (text(PRESET_VARIABLE) or "default").lower()
        if preset_name not in PRESETS:
            raise SettingsError(
                f"{PRESET_VARIABLE}={preset_name!r} is not a preset; it accepts "
                + ", ".join(PRESETS)
            )
        preset = PRESETS[preset_name]

        provider = (text("PERSISTENCE_PROVIDER") or DEFAULT_PROVIDER).lower()
        values: dict[str, Any] = {
            "provider": provider,
            "data_dir": text("AUTOBYTEUS_DATA_DIR") or DEFAULT_DATA_DIR,
            "database_url": text("AUTOBYTEUS_DATABASE_URL"),
            "api_token": text("AUTOBYTEUS_API_TOKEN"),
            "gateway_shared_secret": text("CHANNEL_GATEWAY_SHARED_SECRET"),
            "callback_base_url": text("CHANNEL_CALLBACK_BASE_URL"),
            "callback_shared_secret": text("CHANNEL_CALLBACK_SHARED_SECRET"),
            "callback_timeout_ms": integer("CHANNEL_CALLBACK_TIMEOUT_MS", 5000, 1, 600_000),
            "ingress_routed_disposition": (
                text("CHANNEL_INGRESS_ROUTED_DISPOSITION") or "ROUTED"
            ).upper(),
            "ingress_idempotency_ttl_s": integer(
                "CHANNEL_INGRESS_IDEMPOTENCY_TTL_SECONDS", 3600, 0, 10 * 365 * 86400
            ),
            "callback_idempotency_ttl_s": integer(
                "CHANNEL_CALLBACK_IDEMPOTENCY_TTL_SECONDS", 3600, 0, 10 * 365 * 86400
            ),
            "host": text("AUTOBYTEUS_HOST") or "127.0.0.1",
            "port": integer("AUTOBYTEUS_PORT", 8000, 0, 65535),
            "threads": integer("AUTOBYTEUS_THREADS", preset.get("threads", 8), 1, 256),
            "max_body_bytes": integer("AUTOBYTEUS_MAX_BODY_BYTES", 1 << 20, 1024, 1 << 30),
            "ttl_sweep_interval_s": float(
                integer("AUTOBYTEUS_TTL_SWEEP_INTERVAL_SECONDS",
                        int(preset.get("ttl_sweep_interval_s", 60)), 1, 86400)
            ),
            "lmdb_map_size": (
                integer("AUTOBYTEUS_LMDB_MAP_SIZE", 0, 1 << 20, 1 << 40)
                if text("AUTOBYTEUS_LMDB_MAP_SIZE")
                else preset.get("lmdb_map_size")
            ),
            "outbox_poll_interval_s": float(
                integer("AUTOBYTEUS_OUTBOX_POLL_INTERVAL_SECONDS",
                        int(preset.get("outbox_poll_interval_s", 1)), 1, 3600)
            ),
            "preset": preset_name,
            "max_inflight": (
                integer("AUTOBYTEUS_MAX_INFLIGHT", 0, 1, 100_000)
                if text("AUTOBYTEUS_MAX_INFLIGHT")
                else None
            ),
            "connection_limit": integer("AUTOBYTEUS_CONNECTION_LIMIT", 100, 1, 10_000),
            "backlog": integer("AUTOBYTEUS_BACKLOG", 128, 1, 65_535),
            "channel_timeout_s": integer("AUTOBYTEUS_CHANNEL_TIMEOUT_SECONDS", 30, 1, 3600),
            "max_header_bytes": integer("AUTOBYTEUS_MAX_HEADER_BYTES", 64 << 10, 1024, 1 << 24),
            # -- operating the server (issue 18) --
            "metrics_public": flag("AUTOBYTEUS_METRICS_PUBLIC", False),
            "access_log": flag("AUTOBYTEUS_ACCESS_LOG", True),
            "log_level": (text("AUTOBYTEUS_LOG_LEVEL") or "INFO").upper(),
            "log_format": (text("AUTOBYTEUS_LOG_FORMAT") or "text").lower(),
            "cors_origins": origins("AUTOBYTEUS_CORS_ORIGINS"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.provider not in PROVIDERS:
            raise SettingsError(
                f"PERSISTENCE_PROVIDER={self.provider!r} is not a provider; it accepts "
                + ", ".join(PROVIDERS)
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
        if self.ingress_routed_disposition not in ("ROUTED", "ACCEPTED"):
            raise SettingsError(
                f"CHANNEL_INGRESS_ROUTED_DISPOSITION={self.ingress_routed_disposition!r}; "
                "it accepts ROUTED or ACCEPTED"
            )
        if self.callback_base_url is not None:
            parts = urlsplit(self.callback_base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise SettingsError(
                    f"CHANNEL_CALLBACK_BASE_URL={self.callback_base_url!r} is not an http(s) URL"
                )
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"--port/AUTOBYTEUS_PORT={self.port}; it accepts 0..65535")
        if not 1 <= self.threads <= 256:
            raise SettingsError(f"--threads/AUTOBYTEUS_THREADS={self.threads}; it accepts 1..256")
        if self.max_inflight is not None and self.max_inflight < 1:
            raise SettingsError(
                f"AUTOBYTEUS_MAX_INFLIGHT={self.max_inflight}; it accepts 1..100000")
        # -- operating the server (issue 18) --
        from web.logsetup import LOG_FORMATS, LOG_LEVELS

        if self.log_level not in LOG_LEVELS:
            raise SettingsError(f"AUTOBYTEUS_LOG_LEVEL={self.log_level!r}; it accepts "
                                + ", ".join(LOG_LEVELS))
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"AUTOBYTEUS_LOG_FORMAT={self.log_format!r}; it accepts "
                                + " or ".join(LOG_FORMATS))

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
        """Arguments for engine.open_store()."""
        options: dict[str, Any] = {"data_dir": self.data_dir, "database_url": self.database_url}
        if self.provider == "lmdb" and self.lmdb_map_size:
            options["map_size"] = self.lmdb_map_size
        return options
