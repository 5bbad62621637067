"""The artifacts codec: the one place where artifacts become JSON or bytes (request bodies are
the shape of domains/artifacts/commands.py).

JSON is camelCase (``id, agentId, path, type, workspaceRoot, url, createdAt, updatedAt``) with
ISO-8601 millisecond ``Z`` timestamps; stored bytes are that JSON plus ``{"v": 1}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domains.artifacts.models import MAX_AGENT_ID_BYTES as MAX_AGENT_ID_BYTES
from domains.artifacts.models import Artifact
from domains.codec_support import RecordFormatError as RecordFormatError
from domains.codec_support import dump_envelope, load_envelope, make_converter, register_camel

FORMAT_VERSION = 1

converter = make_converter()
register_camel(converter, Artifact)

_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def to_json(artifact: Artifact) -> dict[str, Any]:
    return converter.unstructure(artifact, Artifact)


def to_bytes(artifact: Artifact) -> bytes:
    return dump_envelope(to_json(artifact), FORMAT_VERSION)


def from_bytes(raw: bytes) -> Artifact:
    return converter.structure(load_envelope(raw, "artifact", FORMAT_VERSION, _UPGRADES), Artifact)
