"""What every domain shares: time, pages, cursors, version tags, and input checking helpers.

Timestamps are UTC datetimes inside the domains and ISO-8601 with milliseconds and ``Z`` at the
edges (``2026-02-22T10:15:30.123Z``). Services take a ``clock`` (a callable returning an aware UTC
datetime) so tests can control time.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from domains.errors import ValidationError

T = TypeVar("T")
Clock = Callable[[], _dt.datetime]
#: A page size as a caller gives it: a number, its query-string text, or None for the default.
Limit = int | str | None

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def utc_now() -> _dt.datetime:
    # Millisecond precision, as serialised: what is stored is exactly what is returned.
    now = _dt.datetime.now(_dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def format_timestamp(ts: _dt.datetime) -> str:
    if ts.tzinfo is not _dt.UTC:
        ts = ts.astimezone(_dt.UTC)
    # Every record carries timestamps, so this runs on every answer: one %-format is about three
    # times cheaper than strftime plus an f-string. The year has four digits always (strftime's
    # %Y gives "999" for the year 999, which ISO 8601 parsers, ours included, refuse).
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 - twice an f-string's speed
        ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second, ts.microsecond // 1000)


def parse_timestamp(text: Any, field: str) -> _dt.datetime:
    """A full ISO-8601 timestamp, or a bare date ``YYYY-MM-DD`` meaning midnight UTC."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"{field} must be an ISO-8601 timestamp or YYYY-MM-DD", field=field)
    raw = text.strip()
    try:
        if len(raw) == 10:
            d = _dt.date.fromisoformat(raw)
            return _dt.datetime(d.year, d.month, d.day, tzinfo=_dt.UTC)
        if raw.endswith(("Z", "z")):
            raw = raw[:-1] + "+00:00"
        ts = _dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(
            f"{field}={text!r} is not an ISO-8601 timestamp or YYYY-MM-DD", field=field
        ) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=_dt.UTC)
    return ts.astimezone(_dt.UTC)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def to_millis(ts: _dt.datetime) -> int:
    """Milliseconds since the epoch, exact (no float rounding)."""
    # (ts - _EPOCH) // timedelta(milliseconds=1), in integers: index keys take it several times
    # per record, inside write transactions. A timedelta's seconds and microseconds are never
    # negative, so the floor division below floors the whole.
    delta = ts - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def from_millis(ms: int) -> _dt.datetime:
    return _EPOCH + _dt.timedelta(milliseconds=ms)


@attrs.frozen
class Page(Generic[T]):
    """One page of a list: ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None = None


def check_limit(limit: Any) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    try:
        n = int(limit)
    except (TypeError, ValueError):
        raise ValidationError(f"limit must be an integer, not {limit!r}", field="limit") from None
    if not 1 <= n <= MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return n


def encode_cursor(position: Any) -> str:
    """An opaque cursor: the JSON of a position, base64url without padding."""
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeError):
        raise ValidationError("cursor is not one this server issued", field="cursor") from None


#: json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False), built once: json.dumps
#: with arguments builds an encoder at every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def etag_of(document: Mapping[str, Any]) -> str:
    """A strong version tag of a record's JSON form: it changes whenever any field does."""
    return hashlib.sha256(_CANONICAL(document).encode()).hexdigest()[:32]


def reject_unknown_fields(payload: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    for name in payload:
        if name not in allowed:
            raise ValidationError(f"unknown field {name!r}", field=name, code="UNKNOWN_FIELD")


def require_object(payload: Any, what: str = "body") -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise ValidationError(f"the {what} must be a JSON object", field=None)
    return payload


def blank_to_none(value: str | None) -> str | None:
    """An optional text where blank means absent: None for None or a blank string, else the
    text as given (not stripped)."""
    return None if value is None or not value.strip() else value
