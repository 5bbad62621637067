"""Logging of the server process: level and format from the settings, and the start-up line that
shows the effective settings with every secret masked."""

from __future__ import annotations

import json
import logging
import sys
import threading
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


class BatchingHandler(logging.Handler):
    """Writes its lines in batches: at most ``max_delay`` seconds after the first line of a
    batch, or at once when ``max_lines`` are waiting, and on flush() / close() (logging does
    both at exit).

    For the access log, one line per request: a write of its own per line is a system call that
    releases the GIL, a hand-over to another thread whenever request threads wait for it; in
    batches that happens a few times a second instead. (Its gain alone was not separable from
    the noise of this machine; the measured gain came from ``AccessLogWriter``.) A process
    killed outright loses at most the lines of the last ``max_delay`` seconds.
    """

    def __init__(self, stream: TextIO, max_lines: int = 256, max_delay: float = 0.25,
                 stream_lock: Any = None) -> None:
        super().__init__()
        self.stream = stream
        #: The lock of the other handler writing to ``stream``, so that lines never mix.
        self._stream_lock = stream_lock or threading.Lock()
        self.max_lines = max_lines
        self.max_delay = max_delay
        self._lines: list[str] = []
        self._waiting = threading.Condition(threading.Lock())
        self._writer: threading.Thread | None = None
        self._closed = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.append(line)

    def append(self, line: str) -> None:
        """Queue one formatted line (without its newline)."""
        with self._waiting:
            self._lines.append(line)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_batches,
                                                name="log-writer", daemon=True)
                self._writer.start()
            if len(self._lines) == 1 or len(self._lines) >= self.max_lines:
                self._waiting.notify()

    def _write_batches(self) -> None:
        while True:
            with self._waiting:
                while not self._lines and not self._closed:
                    self._waiting.wait()  # idle: no wake-ups
                if self._closed:
                    return
                if len(self._lines) < self.max_lines:
                    self._waiting.wait(self.max_delay)
            self.flush()

    def flush(self) -> None:
        with self._waiting:
            lines, self._lines = self._lines, []
        if lines:
            try:
                with self._stream_lock:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
            except Exception:
                pass  # a closed or broken stderr must not break requests

    def close(self) -> None:
        self.flush()
        with self._waiting:
            self._closed = True
            self._waiting.notify()
        super().close()


ACCESS_LOGGER = "web.access"


class AccessLogWriter(BatchingHandler):
    """The access log's handler: it takes the lines of web/observe.py already formatted, as
    ``fmt`` formats any record (text: ``TEXT_FORMAT``; json: ``JsonFormatter``'s object with
    the fields under ``http``), without building a LogRecord. Measured in the app, the record,
    the formatter and the handler chain cost 5 times what this does, on every request; records
    that other code logs to ``web.access`` are formatted as usual."""

    def __init__(self, stream: TextIO, fmt: str = "text", stream_lock: Any = None) -> None:
        super().__init__(stream, stream_lock=stream_lock)
        self.json = fmt == "json"
        self._second = -1
        self._stamp = ""

    def _time(self, now: float) -> str:
        second = int(now)
        if second != self._second:  # strftime once a second, not per line
            pattern = "%Y-%m-%dT%H:%M:%S" if self.json else "%Y-%m-%d %H:%M:%S"
            convert = time.gmtime if self.json else time.localtime
            self._stamp, self._second = time.strftime(pattern, convert(second)), second
        millis = int((now - second) * 1000)
        return f"{self._stamp}.{millis:03d}Z" if self.json else f"{self._stamp},{millis:03d}"

    def access(self, method: str, route: str, status: int, size: int, seconds: float,
               request_id: str) -> None:
        stamp = self._time(time.time())
        message = f"{method} {route} {status} {size}B {seconds * 1000.0:.1f}ms id={request_id}"
        if self.json:
            self.append(json.dumps({
                "time": stamp, "level": "INFO", "logger": ACCESS_LOGGER, "message": message,
                "http": {"method": method, "route": route, "status": status, "bytes": size,
                         "duration_ms": round(seconds * 1000.0, 3), "request_id": request_id},
            }, ensure_ascii=False, separators=(",", ":")))
        else:
            self.append(f"{stamp} INFO {ACCESS_LOGGER} {message}")


#: The access log's writer once configure_logging made one (web/observe.py writes to it).
access_writer: AccessLogWriter | None = None


class LoggingSetup:
    """What configure_logging installed; ``undo()`` takes it away (for tests)."""

    def __init__(self, root_handler: logging.Handler,
                 batched: list[tuple[logging.Logger, BatchingHandler]]) -> None:
        self.root_handler = root_handler
        self.batched = batched

    def flush(self) -> None:
        self.root_handler.flush()
        for _, handler in self.batched:
            handler.flush()

    def undo(self) -> None:
        global access_writer
        logging.getLogger().removeHandler(self.root_handler)
        for logger, handler in self.batched:
            logger.removeHandler(handler)
            handler.close()
            logger.propagate = True
            if handler is access_writer:
                access_writer = None


def configure_logging(level: str = "INFO", fmt: str = "text",
                      stream: TextIO | None = None) -> LoggingSetup:
    """Replace the root logger's handlers by one writing to ``stream`` (stderr) in ``fmt``;
    the access log goes to the same stream through an ``AccessLogWriter``."""
    global access_writer
    stream = stream or sys.stderr
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logger = logging.getLogger(ACCESS_LOGGER)
    for old in list(logger.handlers):
        if isinstance(old, BatchingHandler):
            logger.removeHandler(old)
            old.close()
    writer = AccessLogWriter(stream, fmt, stream_lock=handler.lock)
    writer.setFormatter(formatter)
    logger.addHandler(writer)
    logger.propagate = False
    access_writer = writer
    batched: list[tuple[logging.Logger, BatchingHandler]] = [(logger, writer)]
    return LoggingSetup(handler, batched)


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
        if not field.repr and isinstance(value, str) and "://" in value:
            # A secret URL (the database's): where it points is worth showing, its password
            # and query (libpq accepts ?password=...) are not.
            parts = urlsplit(_mask_url(value))
            value = urlunsplit(parts._replace(query=MASK if parts.query else ""))
        elif not field.repr:
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
