"""The file backend's format version 1, read to open and upgrade a store written before version 2
(and written by the tests that prove the upgrade).

Version 1: keys and values are JSON strings when their bytes are valid UTF-8, else
``{"base64": "..."}``; ``snapshot.json`` is one JSON document, ``{"snapshot": {"seq", "records",
"crc32"}, "records": [[key, value], ...]}`` with one pair per line; each journal line is one batch,
``{"crc32": "...", "entry": {"seq": n, "put": [[key, value]], "delete": [key]}}``."""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from engine import errors
from engine.backends.file.format import JournalRead
from engine.backends.file.osio import pwrite_all, write_all

if TYPE_CHECKING:
    from engine.backends.file.table import Committed

_LINE_HEAD = b'{"crc32": "'
_LINE_MID = b'", "entry": '
_LINE_END = b"}"
_CRC_END = len(_LINE_HEAD) + 8
_PAYLOAD_START = _CRC_END + len(_LINE_MID)
_HEX8 = re.compile(rb"[0-9a-f]{8}")


# -- encoding ----------------------------------------------------------------------------------


def _encode_bytes(data: bytes) -> str | dict[str, str]:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def _decode_bytes(obj: Any) -> bytes:
    """Raises ValueError (caught by the callers, who know where it was) on anything else."""
    if isinstance(obj, str):
        return obj.encode("utf-8")  # a lone surrogate escape raises UnicodeEncodeError
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(obj.get("base64"), str):
        return base64.b64decode(obj["base64"], validate=True)
    raise ValueError(f"not an encoded key or value: {obj!r:.60}")


def journal_line(  # a version-1 line (the tests build version-1 stores with it)
seq: int, changes: dict[bytes, bytes | None]) -> bytes:
    puts = [[_encode_bytes(k), _encode_bytes(v)] for k, v in changes.items() if v is not None]
    deletes = [_encode_bytes(k) for k, v in changes.items() if v is None]
    payload = json.dumps({"seq": seq, "put": puts, "delete": deletes}, ensure_ascii=False).encode(
        "utf-8"
    )
    return b"".join(
        (_LINE_HEAD, b"%08x" % zlib.crc32(payload), _LINE_MID, payload, _LINE_END, b"\n")
    )


def _parse_line(line: bytes) -> tuple[int, dict[bytes, bytes | None]] | None:
    """A journal line (without its newline) as (seq, changes); None if torn or failing its CRC.

    A line whose CRC matches but whose content is malformed was written whole, so it is damage
    rather than a torn write: it raises CorruptStoreError.
    """
    if (
        len(line) <= _PAYLOAD_START
        or not line.startswith(_LINE_HEAD)
        or line[_CRC_END:_PAYLOAD_START] != _LINE_MID
        or not line.endswith(_LINE_END)
        or not _HEX8.fullmatch(line[len(_LINE_HEAD) : _CRC_END])
    ):
        return None
    payload = line[_PAYLOAD_START : -len(_LINE_END)]
    if zlib.crc32(payload) != int(line[len(_LINE_HEAD) : _CRC_END], 16):
        return None
    try:
        entry = json.loads(payload)
        seq = entry["seq"]
        if type(seq) is not int or seq < 1:
            raise ValueError(f"bad seq {seq!r}")
        changes: dict[bytes, bytes | None] = {}
        for key in entry["delete"]:
            changes[_decode_bytes(key)] = None
        for key, value in entry["put"]:
            changes[_decode_bytes(key)] = _decode_bytes(value)
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.CorruptStoreError(f"a journal entry with a valid checksum is malformed: {exc}")
    return seq, changes


def parse_journal(
    data: bytes, start: int, prev_seq: int | None, snap_seq: int, where: str
) -> JournalRead:
    """Parse ``data``, the journal's bytes from file offset ``start`` to its end.

    ``prev_seq`` is the sequence of the line just before ``start`` (None at the file's start).
    """
    out = JournalRead()
    out.last_seq = prev_seq
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        # A line without its newline is unfinished whatever it holds: the newline is written in
        # the same pwrite, and a batch is acknowledged only after the whole line is durable.
        record = _parse_line(data[pos:nl]) if nl >= 0 else None
        if record is None:
            if _has_valid_line(data, len(data) if nl < 0 else nl + 1):
                raise errors.CorruptStoreError(
                    f"{where}: the entry at byte {start + pos} is damaged and valid entries follow"
                    " it; this is not an interrupted write, so the store refuses to guess"
                )
            out.torn_bytes = len(data) - pos
            break
        seq, changes = record
        if out.last_seq is None:
            if seq > snap_seq + 1:
                raise errors.CorruptStoreError(
                    f"{where}: starts at entry {seq} but the snapshot covers only up to {snap_seq}"
                )
        elif seq != out.last_seq + 1:
            raise errors.CorruptStoreError(
                f"{where}: entry {seq} at byte {start + pos} follows entry {out.last_seq}"
            )
        out.last_seq = seq
        if seq > snap_seq:
            out.changes.update(changes)
        else:
            out.stale = True
        pos = nl + 1
    out.end = start + pos
    return out


def _has_valid_line(data: bytes, pos: int) -> bool:
    for line in data[pos:].split(b"\n"):
        try:
            if _parse_line(line) is not None:
                return True
        except errors.CorruptStoreError:
            return True  # checksummed, hence written whole: damage, not a torn tail
    return False


def _snapshot_chunks(committed: Committed, seq: int) -> Iterator[bytes]:
    # The CRC placeholder is patched in place once the body is written (see write_snapshot).
    count = len(committed.keys)
    yield (
        f'{{"snapshot": {{"seq": {seq}, "records": {count}, "crc32": "00000000"}}, "records": [\n'
    ).encode("ascii")
    rows: list[str] = []
    size = 0
    for i, key in enumerate(committed.keys):
        row = json.dumps(
            [_encode_bytes(key), _encode_bytes(committed.values[key])], ensure_ascii=False
        )
        rows.append(row if i == 0 else ",\n" + row)
        size += len(row)
        if size >= 1 << 20:
            yield "".join(rows).encode("utf-8")
            rows, size = [], 0
    rows.append("\n]}\n" if committed.keys else "]}\n")
    yield "".join(rows).encode("utf-8")


def write_snapshot(fd: int, committed: Committed, seq: int) -> None:
    """A version-1 snapshot (the tests build version-1 stores with it)."""
    chunks = _snapshot_chunks(committed, seq)
    header = next(chunks)
    write_all(fd, header)
    crc = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
        write_all(fd, chunk)
    crc_at = header.index(b'"crc32": "') + len(b'"crc32": "')
    pwrite_all(fd, b"%08x" % crc, crc_at)


def parse_snapshot(raw: bytes, where: str) -> tuple[dict[bytes, bytes], int]:
    try:
        doc = json.loads(raw)
        info = doc["snapshot"]
        seq, count, crc = info["seq"], info["records"], info["crc32"]
        if type(seq) is not int or seq < 0 or type(count) is not int:
            raise ValueError(f"bad header {info!r}")
        body = raw[raw.index(b"\n") + 1 :]
        if f"{zlib.crc32(body):08x}" != crc:
            raise ValueError("checksum mismatch")
        records = doc["records"]
        values = {_decode_bytes(k): _decode_bytes(v) for k, v in records}
        if len(records) != count or len(values) != count:
            raise ValueError(f"{len(records)} records ({len(values)} keys), header says {count}")
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.CorruptStoreError(f"{where} is damaged: {exc}")
    return values, seq
