"""Logging of the server process: level and format from the settings, and the start-up line that
shows the effective settings with every secret masked."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import attrs

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
MASK = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's structured
    fields (the access log's ``http``, the start-up line's ``settings``) when it has them."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("http", "settings"):
            value = getattr(record, field, None)
            if value is not None:
                out[field] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def configure_logging(level: str = "INFO", fmt: str = "text",
                      stream: TextIO | None = None) -> logging.Handler:
    """Replace the root logger's handlers by one writing to ``stream`` (stderr) in ``fmt``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))


def effective_settings(settings: Any) -> dict[str, Any]:
    """Every setting by name, as the server runs with it; secrets (fields kept out of the
    settings' repr) show only whether they are set, and a password in a URL is masked."""
    out: dict[str, Any] = {}
    for field in attrs.fields(type(settings)):
        value = getattr(settings, field.name)
        if not field.repr:
            value = None if value is None else MASK
        elif isinstance(value, str) and "://" in value:
            value = _mask_url(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[field.name] = value
    return out


def log_effective_settings(settings: Any, logger: logging.Logger | None = None) -> None:
    shown = effective_settings(settings)
    (logger or logging.getLogger("autobyteus-server")).info(
        "settings: %s", " ".join(f"{k}={v}" for k, v in shown.items()),
        extra={"settings": shown})
