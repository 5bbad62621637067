"""The artifacts codec: the one place where artifacts become JSON or bytes, and where request
bodies are checked and parsed.

JSON is camelCase (``id, agentId, path, type, workspaceRoot, url, createdAt, updatedAt``) with
ISO-8601 millisecond ``Z`` timestamps; stored bytes are that JSON plus ``{"v": 1}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from domains.artifacts.models import TYPES, Artifact, infer_type
from domains.codec_support import RecordFormatError as RecordFormatError
from domains.codec_support import (
    camel,
    dump_envelope,
    load_envelope,
    make_converter,
)
from domains.common import (
    optional_text,
    reject_unknown_fields,
    require_object,
    required_text,
)
from domains.errors import ValidationError

FORMAT_VERSION = 1
#: agentId is an element of index keys (clipped beyond 128 bytes, still exact by digest).
MAX_AGENT_ID_BYTES = 255




converter = make_converter()
_renames = {a.name: override(rename=camel(a.name)) for a in attrs.fields(Artifact)}
converter.register_unstructure_hook(
    Artifact, make_dict_unstructure_fn(Artifact, converter, **_renames)
)
converter.register_structure_hook(Artifact, make_dict_structure_fn(Artifact, converter, **_renames))

_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def to_json(artifact: Artifact) -> dict[str, Any]:
    return converter.unstructure(artifact, Artifact)


def to_bytes(artifact: Artifact) -> bytes:
    return dump_envelope(to_json(artifact), FORMAT_VERSION)


def from_bytes(raw: bytes) -> Artifact:
    return converter.structure(load_envelope(raw, "artifact", FORMAT_VERSION, _UPGRADES), Artifact)


CREATE_FIELDS = ("agentId", "path", "type", "workspaceRoot", "url")


def agent_id(value: Any, field: str = "agentId") -> str:
    text = required_text({field: value}, field)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_AGENT_ID_BYTES:
        raise ValidationError(f"{field} must be at most {MAX_AGENT_ID_BYTES} bytes", field=field)
    return text


def parse_create(payload: Any) -> dict[str, Any]:
    """The fields of a new artifact (snake_case). ``type`` is checked against the enum
    (case-insensitive) when given, else inferred from the path's extension."""
    body = require_object(payload)
    reject_unknown_fields(body, CREATE_FIELDS)
    path = required_text(body, "path")
    kind = body.get("type")
    if kind is None:
        kind = infer_type(path)
    elif not isinstance(kind, str) or kind.strip().lower() not in TYPES:
        raise ValidationError(f"type must be one of {', '.join(TYPES)}", field="type")
    else:
        kind = kind.strip().lower()
    return {
        "agent_id": agent_id(body.get("agentId")),
        "path": path,
        "type": kind,
        "workspace_root": optional_text(body, "workspaceRoot"),
        "url": optional_text(body, "url"),
    }
