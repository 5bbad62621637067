"""Agent artifacts (domains.md section 6): plain attrs classes, no I/O."""

from __future__ import annotations

import datetime as _dt

import attrs

from domains.shapes import Choice, wire

#: agentId is an element of index keys (clipped beyond 128 bytes, still exact by digest).
MAX_AGENT_ID_BYTES = 255

TYPES = ("file", "image", "audio", "video", "pdf", "csv", "excel")

_BY_EXTENSION = {
    **dict.fromkeys(("png", "jpg", "jpeg", "gif", "webp", "svg"), "image"),
    **dict.fromkeys(("mp3", "wav", "ogg", "flac", "m4a"), "audio"),
    **dict.fromkeys(("mp4", "mov", "avi", "mkv", "webm"), "video"),
    "pdf": "pdf",
    "csv": "csv",
    "xlsx": "excel",
    "xls": "excel",
}


def infer_type(path: str) -> str:
    """The artifact type implied by the path's extension (case-insensitive); else ``file``.

    Only the last path component counts, with ``/`` or ``\\`` as separators; the path is data
    and is never opened.
    """
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    if not dot:
        return "file"
    return _BY_EXTENSION.get(ext.strip().lower(), "file")


@attrs.frozen(kw_only=True)
class Artifact:
    id: str
    agent_id: str
    path: str
    type: str = wire(Choice(TYPES))
    workspace_root: str | None = None
    url: str | None = None
    created_at: _dt.datetime
    updated_at: _dt.datetime
