"""What a client may send about artifacts: the request shape (see domains/shapes.py)."""

from __future__ import annotations

import attrs

from domains.artifacts.models import MAX_AGENT_ID_BYTES, TYPES
from domains.shapes import Choice, OptionalText, Text, wire


@attrs.frozen(kw_only=True)
class CreateArtifact:
    """A new artifact. ``type`` is one of TYPES (case-insensitive) or, when absent or null,
    inferred from the path's extension by the service."""

    agent_id: str = wire(Text(max_bytes=MAX_AGENT_ID_BYTES))
    path: str = wire(Text())
    type: str | None = wire(Choice(TYPES, case_insensitive=True, nullable=True), default=None)
    workspace_root: str | None = wire(OptionalText(), default=None)
    url: str | None = wire(OptionalText(), default=None)
