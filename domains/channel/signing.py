"""HMAC-SHA256 request signatures of the gateway protocol (domains.md 7.8).

signature = lowercase hex HMAC-SHA256(secret, "<timestamp>.<raw body>") over the exact bytes sent;
the timestamp is Unix seconds and may differ from the receiver's clock by at most 300 s.
"""

from __future__ import annotations

import hashlib
import hmac
import re

MAX_SKEW_S = 300
_TIMESTAMP = re.compile(r"^[0-9]{1,15}$")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> str | None:
    """None when the request is authentic, else the failure code (answered with 401)."""
    if signature is None or not signature.strip():
        return "MISSING_SIGNATURE"
    if timestamp is None or not timestamp.strip():
        return "MISSING_TIMESTAMP"
    ts = timestamp.strip()
    if not _TIMESTAMP.match(ts):
        return "INVALID_TIMESTAMP"
    if abs(now - int(ts)) > MAX_SKEW_S:
        return "TIMESTAMP_OUT_OF_RANGE"
    expected = sign(secret, ts, body).encode("ascii")
    given = signature.strip().lower().encode("utf-8", "replace")
    # compare_digest: the time taken does not tell how much of the signature was right.
    if not hmac.compare_digest(expected, given):
        return "INVALID_SIGNATURE"
    return None
