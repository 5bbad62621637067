"""Operators' log lines of the channel (domains.md 7.9): WARNING lines that a misbehaving peer
cannot turn into a flood, and the text rules that keep secrets and signatures out of them.

A refused ingress signature is written by whoever sends the request, so its lines are rate-limited
per kind: at most ``burst`` lines per ``window`` seconds; the lines held back are counted and the
count rides on the next line let through, so nothing goes unnoticed and the log stays readable.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

#: The recorded error of an outbox attempt is at most this many bytes (UTF-8).
MAX_ERROR_BYTES = 500

# A hex HMAC-SHA256 (what a signature looks like), or any longer run of hex digits: never written
# to the store or the log, even when a gateway's answer quotes one.
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class RateLimitedLog:
    """``warning()`` writes at most ``burst`` lines per ``window`` seconds (thread-safe)."""

    def __init__(self, logger: logging.Logger, *, burst: int = 5, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.burst = burst
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._window_start: float | None = None
        self._written = 0
        self._held_back = 0

    def warning(self, message: str, *args: Any) -> bool:
        """Write the line unless this window's budget is spent; whether it was written."""
        with self._lock:
            now = self.clock()
            if self._window_start is None or now - self._window_start >= self.window:
                self._window_start = now
                self._written = 0
            if self._written >= self.burst:
                self._held_back += 1
                return False
            self._written += 1
            held_back, self._held_back = self._held_back, 0
        if held_back:
            message += " (%d similar lines held back)"
            args = (*args, held_back)
        self.logger.warning(message, *args, stacklevel=2)
        return True


def clip_utf8(text: str, limit: int = MAX_ERROR_BYTES) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")


def safe_text(text: str, secrets: Iterable[str | None] = (), limit: int = MAX_ERROR_BYTES) -> str:
    """One line of at most ``limit`` bytes with every secret and anything shaped like a
    signature replaced by ``[redacted]`` (redacted before clipping, so a cut cannot leave half a
    secret behind)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _HEX_DIGEST.sub("[redacted]", text)
    return clip_utf8(_CONTROL.sub(" ", text).strip(), limit)
