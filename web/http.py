"""Request parsing and answering helpers shared by the resources (the web layer only parses)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import falcon

from domains.common import Page, etag_of
from domains.shapes import Rule, parse
from web.errors import ApiError

T = TypeVar("T")

JSON_TYPES = ("application/json",)


def read_json(req: falcon.Request, max_bytes: int) -> Any:
    """The request body as JSON: 415 for another type, 413 past ``max_bytes``, 400 if malformed."""
    content_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if content_type not in JSON_TYPES and not content_type.endswith("+json"):
        raise ApiError(
            falcon.HTTP_415, "UNSUPPORTED_MEDIA_TYPE",
            f"the body must be application/json, not {content_type or 'missing'}",
        )
    length = req.content_length
    if length is not None and length > max_bytes:
        raise ApiError(
            falcon.HTTP_413, "PAYLOAD_TOO_LARGE", f"the body exceeds the limit of {max_bytes} bytes"
        )
    raw = req.bounded_stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ApiError(
            falcon.HTTP_413, "PAYLOAD_TOO_LARGE", f"the body exceeds the limit of {max_bytes} bytes"
        )
    return parse_text_json(raw)


def parse_text_json(raw: bytes) -> Any:
    """``raw`` as JSON that is also text: 400 MALFORMED_JSON if malformed, or if it holds a lone
    UTF-16 surrogate escape (valid JSON syntax, but no store can encode it: it would fail as a
    500)."""
    document = parse_json_bytes(raw)
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(document):
        raise ApiError(falcon.HTTP_400, "MALFORMED_JSON",
                       "the body holds a lone UTF-16 surrogate escape (\\ud800-\\udfff)")
    return document


#: Only a \uD800-\uDFFF escape can put a surrogate into parsed JSON (UTF-8 input cannot).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(document: Any) -> bool:
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json_bytes(raw: bytes) -> Any:
    if not raw.strip():
        raise ApiError(falcon.HTTP_400, "MALFORMED_JSON", "the body is empty")
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):  # as json.loads(text) says it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _decode(text)
    except UnicodeDecodeError:
        raise ApiError(falcon.HTTP_400, "MALFORMED_JSON", "the body is not valid UTF-8") from None
    except RecursionError:
        raise ApiError(falcon.HTTP_400, "MALFORMED_JSON", "the body is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(falcon.HTTP_400, "MALFORMED_JSON", f"malformed JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: json.loads(text, parse_constant=_reject_constant), built once: json.loads with arguments builds
#: a decoder at every call.
_decode = json.JSONDecoder(parse_constant=_reject_constant).decode

#: How every JSON answer is written: json.dumps(document, ensure_ascii=False), which is Falcon's
#: default, with the encoder built once (see web/api.py).
encode_json = json.JSONEncoder(ensure_ascii=False).encode


def read_object(req: falcon.Request, max_bytes: int) -> dict[str, Any]:
    body = read_json(req, max_bytes)
    if not isinstance(body, dict):
        raise ApiError(falcon.HTTP_400, "VALIDATION_ERROR", "the body must be a JSON object")
    return body


def read_command(req: falcon.Request, max_bytes: int, shape: type[T]) -> T:
    """The body as an instance of ``shape`` (domains/shapes.py), checked by its declaration."""
    return parse(shape, read_json(req, max_bytes))


def send(
    resp: falcon.Response, document: Any, status: str = falcon.HTTP_200, *, etag: bool = False
) -> None:
    resp.status = status
    resp.media = document
    if etag and isinstance(document, Mapping):
        resp.etag = etag_of(document)


class AnswerMemo:
    """The encoded answers (body and ETag) of stored records, by the record's stored bytes.

    An answer is a function of those bytes alone, so an entry never goes stale: a changed record
    has other bytes, and the entry of the old ones just waits to be dropped. A record read again
    and again (an agent's prompt) is then answered without decoding, checking and encoding it
    again, and without hashing its canonical form for the ETag. Bounded: records over
    ``max_item`` bytes are not kept, and the whole memo is dropped when it would pass
    ``max_bytes`` (the records still read come straight back).
    """

    def __init__(self, max_bytes: int = 4 << 20, max_item: int = 64 << 10) -> None:
        self._entries: dict[bytes, tuple[bytes, str]] = {}
        self._size = 0
        self._max_bytes = max_bytes
        self._max_item = max_item
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def answer(
        self, raw: bytes, to_document: Callable[[bytes], Mapping[str, Any]]
    ) -> tuple[bytes, str]:
        entry = self._entries.get(raw)
        if entry is not None:
            return entry
        document = to_document(raw)
        # What Falcon's JSON handler (dumps=encode_json) and send(..., etag=True) would answer.
        entry = (encode_json(document).encode(), etag_of(document))
        size = len(raw) + len(entry[0])
        if size <= self._max_item:
            with self._lock:
                if self._size + size > self._max_bytes:
                    self._entries = {}
                    self._size = 0
                self._entries[raw] = entry
                self._size += size
        return entry


def send_stored(
    resp: falcon.Response,
    raw: bytes,
    to_document: Callable[[bytes], Mapping[str, Any]],
    memo: AnswerMemo,
) -> None:
    """Answer 200 with ``to_document(raw)`` and its ETag, as ``send(..., etag=True)`` does."""
    body, etag = memo.answer(raw, to_document)
    resp.status = falcon.HTTP_200
    resp.data = body
    resp.content_type = falcon.MEDIA_JSON
    resp.etag = etag


def send_page(resp: falcon.Response, page: Page[Any], to_json: Callable[[Any], Any]) -> None:
    resp.media = {"items": [to_json(item) for item in page.items], "nextCursor": page.next_cursor}


def if_match(req: falcon.Request) -> str | None:
    """The ETag a client expects (``If-Match``), unquoted; None when absent or ``*``."""
    raw = req.get_header("If-Match")
    if raw is None:
        return None
    value = raw.strip()
    if value == "*":
        return None
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def query_text(req: falcon.Request, name: str) -> str | None:
    value = req.get_param(name)
    return value if value not in (None, "") else None


def query_checked(req: falcon.Request, name: str, rule: Rule) -> Any:
    """A query parameter checked by a shape rule (the one its documented schema comes from);
    None when absent or empty."""
    value = req.get_param(name)
    return None if value in (None, "") else rule.check(value, name)


def query_bool(req: falcon.Request, name: str) -> bool | None:
    value = req.get_param(name)
    if value in (None, ""):
        return None
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ApiError(falcon.HTTP_400, "VALIDATION_ERROR", f"{name} must be true or false", name)
