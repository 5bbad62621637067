"""The file backend's on-disk format, version 2: JSON Lines a person can read, grep and diff.

Every stored pair is one line, its key decoded from the engine's packed tuple into a JSON array
(:mod:`engine.keys`; a ``bytes`` element is ``{"base64": "..."}``) and its value embedded as what
it is::

    {"key": ["c", "prompts", "r", 130], "value": {"v": 1, "name": "greeting", ...}}
    {"key": ["c", "prompts", "u", "name", "greeting"], "tuple": [130]}
    {"key": ["c", "prompts", "o", "created", 1765432100000000, 130], "text": ""}
    {"key": {"base64": "/wBi"}, "base64": "AAEC"}

``value`` holds a value that is JSON (one line of it, UTF-8, no NaN), byte for byte as stored:
it is written verbatim and read back as the exact bytes between ``"value": `` and the line's
closing brace, so a round trip never re-encodes it. Other values are ``tuple`` (a packed tuple,
decoded like keys), ``text`` (UTF-8 that is not JSON) or ``base64``; a key that is not a packed
tuple is ``{"text": "..."}`` if it is UTF-8, else ``{"base64": "..."}``. Each form is used only
where decoding it gives back exactly the stored bytes, so nothing is lost whatever they are.

``snapshot.json``: a header line, then the pairs by section, each opened by a ``section`` line::

    {"format": "autobyteus-file-snapshot", "version": 2, "seq": 41, "records": 3, "crc32": "..."}
    {"section": "records", "collection": "prompts"}
    {"key": ["c", "prompts", "r", 1], "value": {...}}
    {"section": "sequences"}
    {"section": "ttl"}
    {"section": "other"}
    {"section": "indexes"}

Records come first, grouped by collection in key order; then sequences, TTL keys, other keys,
and last the derived entries (unique claims, ordered entries, roll-ups, TTL expiry entries;
:data:`engine.indexes.layout.INDEX_KINDS`). They are kept in the file rather than rebuilt at open:
what they derive from is known to the domains that declare the indexes, not to the engine (which
opens a store without them: the tools, a migration), and rebuilding would make every open cost a
pass over every record. ``records`` counts the pair lines; the CRC-32 covers every byte after the
header line.

``journal.jsonl``: one batch per group commit, its changed pairs as lines (a deletion is
``{"key": [...], "deleted": true}``; record lines first, derived entries after), closed by a
commit line whose CRC-32 covers the batch's lines and the commit line up to the checksum::

    {"commit": 42, "changes": 2, "crc32": "1a2b3c4d"}

A batch without a valid commit line after it was cut off by a crash (a torn tail) if no valid
batch follows, and is damage otherwise. ``journal-<seq>.jsonl`` is a journal segment closed at
entry ``seq`` whose snapshot is being written (see :mod:`engine.backends.file`).
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from engine import errors
from engine.backends.file.osio import pwrite_all, write_all
from engine.indexes.layout import INDEX_KINDS, kind_of
from engine.keys import pack, unpack

META_NAME = "meta.json"
SNAPSHOT_NAME = "snapshot.json"
JOURNAL_NAME = "journal.jsonl"
LOCK_NAME = "lock"
#: The version of the file backend's format this code writes (meta.json's ``format_version``).
VERSION = 2
SNAPSHOT_FORMAT = "autobyteus-file-snapshot"

_FROZEN = re.compile(r"journal-(\d+)\.jsonl")
_COMMIT = re.compile(rb'\{"commit": (\d+), "changes": (\d+), "crc32": "([0-9a-f]{8})"\}')
_COMMIT_HEAD = b'{"commit": '
_KEY_HEAD = '{"key": '
_VALUE_SEP = ', "value": '
_decoder = json.JSONDecoder()

#: Snapshot sections, in file order; records have one section per collection.
SECTIONS = ("records", "sequences", "ttl", "other", "indexes")
_SECTION_OF_KIND = {"record": "records", "sequence": "sequences", "ttl": "ttl", "other": "other"}


def frozen_name(last_seq: int) -> str:
    """The file name of a journal segment closed at entry ``last_seq`` (zero-padded: ls sorts)."""
    return f"journal-{last_seq:012d}.jsonl"


def frozen_seq(name: str) -> int | None:
    """The last entry of the closed journal segment ``name``; None if it is not one."""
    m = _FROZEN.fullmatch(name)
    return int(m.group(1)) if m else None


# -- pairs as lines -----------------------------------------------------------------------------


#: JSON text of one string, as json.dumps(..., ensure_ascii=False) writes it (the C encoder).
_json_str = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _element_text(element: Any) -> str:
    kind = type(element)
    if kind is str:
        return _json_str(element)  # type: ignore[no-any-return]
    if kind is int:
        return str(element)
    if element is None:
        return "null"
    return f'{{"base64": "{base64.b64encode(element).decode("ascii")}"}}'


def _tuple_text(data: bytes) -> tuple[str, tuple[Any, ...]] | None:
    """``data`` as a JSON array of its decoded tuple, if that decodes back to exactly ``data``."""
    try:
        parts = unpack(data)
        if pack(parts) != data:
            return None
        text = "[" + ", ".join([_element_text(e) for e in parts]) + "]"
        text.encode("utf-8")  # a str element with a lone surrogate cannot go into the file
    except (ValueError, IndexError, UnicodeEncodeError):
        return None
    return text, parts


class _KeyText:
    """A key's JSON text, and where it goes in a snapshot: (section, collection)."""

    __slots__ = ("text", "section", "collection")

    def __init__(self, key: bytes) -> None:
        found = _tuple_text(key)
        self.collection: str | None = None
        if found is None:
            self.section = "other"
            try:
                text = json.dumps(key.decode("utf-8"), ensure_ascii=False)
                self.text = f'{{"text": {text}}}'
            except UnicodeDecodeError:
                self.text = f'{{"base64": "{base64.b64encode(key).decode("ascii")}"}}'
            return
        self.text, parts = found
        kind = kind_of(parts)
        self.section = "indexes" if kind in INDEX_KINDS else _SECTION_OF_KIND[kind]
        if kind == "record":
            self.collection = parts[1]


#: Key texts by key: batches write the same few keys again and again (counters, roll-ups).
_key_texts: dict[bytes, _KeyText] = {}
_KEY_TEXTS_MAX = 4096


def _key_text(key: bytes) -> _KeyText:
    found = _key_texts.get(key)
    if found is None:
        found = _KeyText(key)
        if len(_key_texts) >= _KEY_TEXTS_MAX:
            _key_texts.clear()
        _key_texts[key] = found
    return found


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: Python's JSON reader without its extensions (NaN, Infinity): what JSON is, for a value.
_strict_json = json.JSONDecoder(parse_constant=_reject_constant)
#: The first bytes a JSON text can start with (most other values fail here, cheaply).
_JSON_START = frozenset(b'{["-0123456789tfn \t')


def _value_field(value: bytes) -> str:
    """The line's second field for ``value``: the first form that gives back exactly its bytes."""
    if not value:
        return '"text": ""'
    if value[0] in _JSON_START and b"\n" not in value and b"\r" not in value:
        try:
            text = value.decode("utf-8")
            _strict_json.decode(text)
            return _VALUE_SEP[2:] + text
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            pass
    found = _tuple_text(value)
    if found is not None:
        return '"tuple": ' + found[0]
    try:
        return '"text": ' + _json_str(value.decode("utf-8"))
    except UnicodeDecodeError:
        return f'"base64": "{base64.b64encode(value).decode("ascii")}"'


def pair_line(key: bytes, value: bytes | None) -> str:
    """One pair (or, with ``value`` None, one deletion) as a line, newline included."""
    field = '"deleted": true' if value is None else _value_field(value)
    return f"{_KEY_HEAD}{_key_text(key).text}, {field}}}\n"


def _element(obj: Any) -> Any:
    if obj is None or isinstance(obj, str) or (isinstance(obj, int) and not isinstance(obj, bool)):
        return obj
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(obj.get("base64"), str):
        return base64.b64decode(obj["base64"], validate=True)
    raise ValueError(f"not a key element: {obj!r:.60}")


def _tuple_bytes(obj: Any) -> bytes:
    if not isinstance(obj, list):
        raise ValueError(f"not a tuple: {obj!r:.60}")
    return pack([_element(e) for e in obj])


def _key_bytes(obj: Any) -> bytes:
    if isinstance(obj, dict):  # a key that is not a tuple
        if len(obj) == 1 and isinstance(obj.get("text"), str):
            return obj["text"].encode("utf-8")  # type: ignore[no-any-return]
        return _element(obj)  # type: ignore[no-any-return]
    return _tuple_bytes(obj)


def parse_pair(line: str) -> tuple[bytes, bytes | None]:
    """A line made by :func:`pair_line` (without its newline); ValueError if it is not one."""
    if not line.startswith(_KEY_HEAD):
        raise ValueError(f"not a key line: {line!r:.60}")
    key_obj, end = _decoder.raw_decode(line, len(_KEY_HEAD))
    key = _key_bytes(key_obj)
    if line.startswith(_VALUE_SEP, end) and line.endswith("}"):
        return key, line[end + len(_VALUE_SEP) : -1].encode("utf-8")
    if not line.startswith(', "', end):
        raise ValueError(f"not a key line: {line!r:.60}")
    field = json.loads("{" + line[end + 2 :])
    if len(field) != 1:
        raise ValueError(f"not a key line: {line!r:.60}")
    ((name, obj),) = field.items()
    if name == "deleted" and obj is True:
        return key, None
    if name == "tuple":
        return key, _tuple_bytes(obj)
    if name == "text" and isinstance(obj, str):
        return key, obj.encode("utf-8")
    if name == "base64" and isinstance(obj, str):
        return key, base64.b64decode(obj, validate=True)
    raise ValueError(f"not a value: {name!r}")


# -- the journal --------------------------------------------------------------------------------


def journal_batch(seq: int, changes: dict[bytes, bytes | None]) -> bytes:
    """One batch as journal lines: its pairs (records first), then its commit line."""
    first: list[str] = []
    derived: list[str] = []
    for key, value in changes.items():
        line = pair_line(key, value)
        (derived if _key_text(key).section == "indexes" else first).append(line)
    body = "".join(first + derived).encode("utf-8")
    head = b'%s%d, "changes": %d, "crc32": "' % (_COMMIT_HEAD, seq, len(changes))
    return b"%s%s%08x\"}\n" % (body, head, zlib.crc32(head, zlib.crc32(body)))


def _commit_at(data: bytes, batch_start: int, pos: int, nl: int) -> tuple[int, int] | None:
    """The (seq, count) of the commit line data[pos:nl] closing the batch from ``batch_start``,
    or None if it is not a whole commit line with a matching checksum."""
    m = _COMMIT.fullmatch(data, pos, nl)
    if m is None:
        return None
    head_end = m.start(3)
    crc = zlib.crc32(data[pos:head_end], zlib.crc32(data[batch_start:pos]))
    if crc != int(m.group(3), 16):
        return None
    return int(m.group(1)), int(m.group(2))


def _batch_changes(body: bytes, count: int) -> dict[bytes, bytes | None]:
    """The changes of a batch whose checksum matched (so malformed means damaged, not torn)."""
    try:
        lines = body.decode("utf-8").split("\n")
        lines.pop()  # after the last newline
        if len(lines) != count:
            raise ValueError(f"{len(lines)} lines, its commit says {count}")
        changes: dict[bytes, bytes | None] = {}
        for line in lines:
            key, value = parse_pair(line)
            changes[key] = value
    except (ValueError, IndexError) as exc:
        raise errors.CorruptStoreError(f"a journal batch with a valid checksum is malformed: {exc}")
    return changes


class JournalRead:
    """What parsing a stretch of the journal found."""

    __slots__ = ("changes", "end", "torn_bytes", "last_seq", "stale")

    def __init__(self) -> None:
        self.changes: dict[bytes, bytes | None] = {}  # the new entries, merged in order
        self.end = 0  # file offset just after the last good batch
        self.torn_bytes = 0  # bytes after ``end`` that a crash left unfinished
        self.last_seq: int | None = None
        self.stale = False  # some entries were already covered by the snapshot


def parse_journal(
    data: bytes, start: int, prev_seq: int | None, snap_seq: int, where: str
) -> JournalRead:
    """Parse ``data``, a journal's bytes from file offset ``start`` to its end.

    ``prev_seq`` is the entry just before ``start`` (in this file or the segment before it;
    None if there is none since the snapshot). A version-1 journal is read as such.
    """
    if data.startswith(b'{"crc32": "'):
        from engine.backends.file import format_v1

        return format_v1.parse_journal(data, start, prev_seq, snap_seq, where)
    out = JournalRead()
    out.last_seq = prev_seq
    pos = batch_start = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            break  # a line without its newline is unfinished, whatever it holds
        if not data.startswith(_COMMIT_HEAD, pos):
            pos = nl + 1
            continue
        commit = _commit_at(data, batch_start, pos, nl)
        if commit is None:
            if _has_valid_batch(data, nl + 1):
                raise errors.CorruptStoreError(
                    f"{where}: the batch at byte {start + batch_start} is damaged and valid "
                    "batches follow it; this is not an interrupted write, so the store refuses "
                    "to guess"
                )
            break
        seq, count = commit
        if out.last_seq is None:
            if seq > snap_seq + 1:
                raise errors.CorruptStoreError(
                    f"{where}: starts at entry {seq} but the snapshot covers only up to {snap_seq}"
                )
        elif seq != out.last_seq + 1:
            raise errors.CorruptStoreError(
                f"{where}: entry {seq} at byte {start + pos} follows entry {out.last_seq}"
            )
        changes = _batch_changes(data[batch_start:pos], count)
        out.last_seq = seq
        if seq > snap_seq:
            out.changes.update(changes)
        else:
            out.stale = True
        pos = batch_start = nl + 1
    out.end = start + batch_start
    out.torn_bytes = len(data) - batch_start
    return out


def _has_valid_batch(data: bytes, pos: int) -> bool:
    batch_start = pos
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return False
        if data.startswith(_COMMIT_HEAD, pos):
            if _commit_at(data, batch_start, pos, nl) is not None:
                return True
            batch_start = nl + 1
        pos = nl + 1


# -- the snapshot -------------------------------------------------------------------------------


def _header(seq: int, count: int, crc: int) -> bytes:
    return (
        f'{{"format": "{SNAPSHOT_FORMAT}", "version": {VERSION}, "seq": {seq}, '
        f'"records": {count}, "crc32": "{crc:08x}"}}\n'
    ).encode("ascii")


def _section_line(name: str, collection: str | None = None) -> str:
    if collection is None:
        return f'{{"section": "{name}"}}\n'
    return f'{{"section": "{name}", "collection": {json.dumps(collection, ensure_ascii=False)}}}\n'


class _Chunks:
    """Writes text to a descriptor in chunks of about a MiB, keeping the CRC-32 of the bytes."""

    def __init__(self, fd: int, after_chunk: Callable[[], None] | None) -> None:
        self.fd = fd
        self.after_chunk = after_chunk
        self.crc = 0
        self.parts: list[str] = []
        self.size = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        data = "".join(self.parts).encode("utf-8")
        self.crc = zlib.crc32(data, self.crc)
        write_all(self.fd, data)
        self.parts, self.size = [], 0
        if self.after_chunk is not None:
            self.after_chunk()


def write_snapshot(
    fd: int,
    pairs: Iterable[tuple[bytes, bytes]],
    seq: int,
    after_chunk: Callable[[], None] | None = None,
) -> None:
    """Write the snapshot of ``pairs`` (in key order) at entry ``seq`` to the empty file ``fd``,
    calling ``after_chunk`` after each MiB or so written.

    Records are written as they come; the lines of the later sections wait in memory.
    """
    # The header goes in last, when the count and the CRC are known; its place is kept with room
    # for a count of up to 12 digits (the line is padded with spaces, which JSON allows).
    header_size = len(_header(seq, 10**11, 0))
    write_all(fd, b" " * header_size)
    out = _Chunks(fd, after_chunk)
    later: dict[str, list[str]] = {name: [] for name in SECTIONS[1:]}
    collection: str | None = None
    count = 0
    for key, value in pairs:
        count += 1
        info = _key_text(key)
        line = pair_line(key, value)
        if info.section != "records":
            later[info.section].append(line)
            continue
        if info.collection != collection:
            collection = info.collection
            out.add(_section_line("records", collection))
        out.add(line)
    for name, lines in later.items():
        if lines:
            out.add(_section_line(name))
            for line in lines:
                out.add(line)
    out.flush()
    header = _header(seq, count, out.crc)
    if len(header) > header_size:  # more digits than the placeholder had room for
        raise AssertionError("snapshot header outgrew its place")
    pwrite_all(fd, header[:-1].ljust(header_size - 1) + b"\n", 0)


def snapshot_seq(first_line: bytes) -> int | None:
    """The entry a snapshot covers, read from its first line (either version); None if absent."""
    m = re.search(rb'"seq": (\d+)', first_line)
    return int(m.group(1)) if m else None


def parse_snapshot(raw: bytes, where: str) -> tuple[dict[bytes, bytes], int]:
    """A snapshot's pairs and the entry it covers (a version-1 snapshot is read as such)."""
    if raw.startswith(b'{"snapshot": '):
        from engine.backends.file import format_v1

        return format_v1.parse_snapshot(raw, where)
    try:
        nl = raw.index(b"\n")
        info = json.loads(raw[:nl])
        seq, count, crc = info["seq"], info["records"], info["crc32"]
        if info.get("format") != SNAPSHOT_FORMAT or info.get("version") != VERSION:
            raise ValueError(f"not a version-{VERSION} snapshot: {info!r:.120}")
        if type(seq) is not int or seq < 0 or type(count) is not int:
            raise ValueError(f"bad header {info!r}")
        body = raw[nl + 1 :]
        if f"{zlib.crc32(body):08x}" != crc:
            raise ValueError("checksum mismatch")
        lines = body.decode("utf-8").split("\n")
        if lines.pop() != "":
            raise ValueError("the last line has no newline")
        values: dict[bytes, bytes] = {}
        pairs = 0
        for line in lines:
            if line.startswith('{"section": '):
                continue
            key, value = parse_pair(line)
            if value is None:
                raise ValueError("a deletion in a snapshot")
            values[key] = value
            pairs += 1
        if pairs != count or len(values) != count:
            raise ValueError(f"{pairs} pairs ({len(values)} keys), header says {count}")
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise errors.CorruptStoreError(f"{where} is damaged: {exc}")
    return values, seq
