"""The dump format: JSON Lines with a header, one line per key, and a checksummed footer.

::

    {"format": "autobyteus-dump", "version": 1, "provider": "lmdb", "time": "...", ...}
    {"key": "<utf-8 text or {"base64": ...}>", "value": "<same>", "kind": "record", ...}
    ...
    {"footer": {"count": 2, "sha256": "<hex of every byte before this line>"}}

Every key line carries the engine's exact key and value bytes (``key``, ``value``: the text when
the bytes are UTF-8, else ``{"base64": ...}``), so a load writes back exactly the bytes that were
dumped, whatever the view. The decoded view (the default) adds fields for people: ``kind``,
``domain``, ``tuple`` (the key as its decoded tuple), ``id``, ``json`` (the value, when it is JSON),
``value_tuple`` (an index value, when it is a packed tuple), ``expires_at``. A load ignores them.

The footer's ``sha256`` covers the exact bytes of every line before it (the header included), so a
truncated dump (no footer) and an altered line (checksum mismatch) are both refused before the
first write.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from engine import MAX_KEY_SIZE
from engine.indexes.layout import KeyInfo, classify
from engine.keys import unpack
from tools.common import (
    EXIT_DUMP_CORRUPT,
    ToolError,
    decode_bytes,
    encode_bytes,
    json_element,
)

FORMAT = "autobyteus-dump"
VERSION = 1


class DumpError(ToolError):
    """The dump is not one this code wrote whole: truncated, altered, or not a dump at all."""

    def __init__(self, message: str) -> None:
        super().__init__(f"refusing the dump: {message}", EXIT_DUMP_CORRUPT)


def json_line(obj: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # A decoded str element may hold a lone surrogate (keys use surrogatepass): escape it.
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def iso_time(epoch_us: int) -> str:
    t = _dt.datetime.fromtimestamp(epoch_us / 1_000_000, tz=_dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key_line(key: bytes, value: bytes, info: KeyInfo | None) -> dict[str, Any]:
    """One key's line; ``info`` None gives the raw form (only the exact bytes)."""
    line: dict[str, Any] = {"key": encode_bytes(key), "value": encode_bytes(value)}
    if info is None:
        return line
    line["kind"] = info.kind
    if info.domain is not None:
        line["domain"] = info.domain
    if info.parts is not None:
        line["tuple"] = [json_element(e) for e in info.parts]
    if info.record_id is not None:
        line["id"] = info.record_id
    if info.expires_us is not None:
        line["expires_at"] = iso_time(info.expires_us) if info.expires_us else "never"
    if info.kind in ("unique", "sequence", "rollup", "ttl") and value:
        try:
            line["value_tuple"] = [json_element(e) for e in unpack(value)]
            return line
        except (ValueError, IndexError):
            pass
    if value:
        try:
            line["json"] = json.loads(value.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            pass
    return line


class DumpWriter:
    """Writes a dump to a binary stream: header first, then :meth:`add`, then :meth:`finish`."""

    def __init__(self, out: IO[bytes], header: dict[str, Any]) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self.count = 0
        self._emit(json_line({"format": FORMAT, "version": VERSION, **header}))

    def _emit(self, line: bytes) -> None:
        self._hash.update(line)
        self._out.write(line)

    def add(self, line: dict[str, Any]) -> None:
        self._emit(json_line(line))
        self.count += 1

    def finish(self) -> dict[str, Any]:
        footer = {"count": self.count, "sha256": self._hash.hexdigest()}
        self._out.write(json_line({"footer": footer}))
        self._out.flush()
        return footer


@dataclass
class VerifiedDump:
    header: dict[str, Any]
    count: int
    sha256: str
    #: record collections named in the dump (whose indexes a load may rebuild)
    collections: set[str] = field(default_factory=set)
    index_entries: int = 0


def _parse_key_line(line: bytes, lineno: int) -> tuple[bytes, bytes, dict[str, Any]]:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise DumpError(f"line {lineno} is not JSON ({exc})")
    if not isinstance(obj, dict):
        raise DumpError(f"line {lineno} is not a JSON object")
    if "footer" in obj:
        return b"", b"", obj
    try:
        key, value = decode_bytes(obj["key"]), decode_bytes(obj["value"])
    except (KeyError, ValueError, TypeError) as exc:
        raise DumpError(f"line {lineno} has no valid key and value ({exc})")
    if len(key) > MAX_KEY_SIZE:
        raise DumpError(f"line {lineno}: a key of {len(key)} bytes exceeds the engine's limit")
    return key, value, obj


def verify(f: IO[bytes]) -> VerifiedDump:
    """Read the whole dump once and check header, every line, count and checksum."""
    f.seek(0)
    h = hashlib.sha256()
    first = f.readline()
    if not first:
        raise DumpError("the file is empty")
    try:
        header = json.loads(first)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DumpError(f"the first line is not an {FORMAT} header")
    version = header.get("version")
    if not isinstance(version, int) or not 1 <= version <= VERSION:
        raise DumpError(f"dump format version {version!r}; this code reads 1..{VERSION}")
    if not first.endswith(b"\n"):
        raise DumpError("truncated after the header (no footer)")
    h.update(first)
    found = VerifiedDump(header=header, count=0, sha256="")
    footer: dict[str, Any] | None = None
    lineno = 1
    for line in f:
        lineno += 1
        if footer is not None:
            raise DumpError(f"line {lineno}: data after the footer")
        if not line.endswith(b"\n"):
            raise DumpError(f"truncated: line {lineno} is incomplete and there is no footer")
        key, value, obj = _parse_key_line(line, lineno)
        if "footer" in obj:
            footer = obj["footer"]
            continue
        h.update(line)
        found.count += 1
        info = classify(key, value)
        if info.kind == "record" and info.domain is not None:
            found.collections.add(info.domain)
        elif info.is_index:
            found.index_entries += 1
    if footer is None:
        raise DumpError(f"truncated: no footer after {found.count} keys")
    if not isinstance(footer, dict):
        raise DumpError("the footer is malformed")
    found.sha256 = h.hexdigest()
    if footer.get("count") != found.count:
        raise DumpError(f"the footer counts {footer.get('count')!r} keys, the file holds "
                        f"{found.count}")
    if footer.get("sha256") != found.sha256:
        raise DumpError("checksum mismatch: the dump was altered after it was written")
    return found


def pairs(f: IO[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) pairs of a dump that :func:`verify` accepted."""
    f.seek(0)
    f.readline()
    for lineno, line in enumerate(f, start=2):
        key, value, obj = _parse_key_line(line, lineno)
        if "footer" in obj:
            return
        yield key, value
