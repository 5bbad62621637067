"""The agent-definitions codec: the one place where definitions and their prompt mappings
become JSON or bytes, and where request bodies are checked and parsed.

A stored definition holds no mapping fields (the mapping is its own record); both are stored as
their camelCase JSON plus a format version, ``{"v": 1, ...}``, upgraded on read when older.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from domains.agent_definitions.models import (
    LIST_FIELDS,
    AgentDefinition,
    AgentDefinitionDetail,
    PromptMapping,
)
from domains.codec_support import RecordFormatError as RecordFormatError
from domains.codec_support import (
    camel,
    dump_envelope,
    load_envelope,
    make_converter,
    register_camel,
)
from domains.common import (
    optional_text,
    reject_unknown_fields,
    require_object,
    required_text,
    string_list,
)
from domains.errors import ValidationError
from domains.prompts import codec as prompt_codec

FORMAT_VERSION = 1
MAPPING_FIELDS = ("systemPromptCategory", "systemPromptName")




converter = make_converter()
register_camel(converter, AgentDefinition)
register_camel(converter, PromptMapping)

_DEFINITION_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
_MAPPING_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _dump(doc: Mapping[str, Any]) -> bytes:
    return dump_envelope(doc, FORMAT_VERSION)


def _load(raw: bytes, what: str, upgrades: Mapping[int, Callable]) -> dict[str, Any]:
    return load_envelope(raw, what, FORMAT_VERSION, upgrades)


# -- records ------------------------------------------------------------------------------------
def to_json(definition: AgentDefinition) -> dict[str, Any]:
    return converter.unstructure(definition, AgentDefinition)


def detail_to_json(detail: AgentDefinitionDetail) -> dict[str, Any]:
    """The definition's JSON plus ``prompts``: every prompt of its mapped name and category."""
    doc = to_json(detail.definition)
    doc["prompts"] = [prompt_codec.to_json(p) for p in detail.prompts]
    return doc


def to_bytes(definition: AgentDefinition) -> bytes:
    doc = to_json(definition)
    for name in MAPPING_FIELDS:  # the mapping is its own record
        doc.pop(name)
    return _dump(doc)


def from_bytes(raw: bytes) -> AgentDefinition:
    return converter.structure(_load(raw, "agent definition", _DEFINITION_UPGRADES),
                               AgentDefinition)


def mapping_to_bytes(mapping: PromptMapping) -> bytes:
    return _dump(converter.unstructure(mapping, PromptMapping))


def mapping_from_bytes(raw: bytes) -> PromptMapping:
    return converter.structure(_load(raw, "prompt mapping", _MAPPING_UPGRADES), PromptMapping)


# -- request bodies -----------------------------------------------------------------------------
_LIST_JSON = tuple(camel(f) for f in LIST_FIELDS)
CREATE_FIELDS = ("name", "role", "description", "avatarUrl", *_LIST_JSON, *MAPPING_FIELDS)
PATCH_FIELDS = CREATE_FIELDS
READ_ONLY_FIELDS = ("id", "createdAt", "updatedAt")


def _avatar(body: Mapping[str, Any]) -> str | None:
    value = optional_text(body, "avatarUrl")
    value = value.strip() if value is not None else None
    return value or None


def parse_create(payload: Any) -> dict[str, Any]:
    """The fields of a new definition (snake_case), mapping fields included."""
    body = require_object(payload)
    reject_unknown_fields(body, CREATE_FIELDS)
    out: dict[str, Any] = {
        "name": required_text(body, "name"),
        "role": required_text(body, "role"),
        "description": required_text(body, "description"),
        "avatar_url": _avatar(body),
    }
    for attr, field in zip(LIST_FIELDS, _LIST_JSON, strict=True):
        out[attr] = string_list(body, field)
    out["system_prompt_category"] = required_text(body, "systemPromptCategory")
    out["system_prompt_name"] = required_text(body, "systemPromptName")
    return out


def parse_patch(payload: Any) -> dict[str, Any]:
    """Only the fields given (snake_case); lists replace wholesale (null: ``[]``).

    The mapping fields are checked whenever given but change the mapping only when both are
    given (domains.md 2); they come back together under ``"mapping"`` as (category, name).
    """
    body = require_object(payload)
    for name in READ_ONLY_FIELDS:
        if name in body:
            raise ValidationError(f"{name} cannot be changed", field=name, code="READ_ONLY_FIELD")
    reject_unknown_fields(body, PATCH_FIELDS)
    out: dict[str, Any] = {}
    for field in ("name", "role", "description"):
        if field in body:
            out[field] = required_text(body, field)
    if "avatarUrl" in body:
        out["avatar_url"] = _avatar(body)
    for attr, field in zip(LIST_FIELDS, _LIST_JSON, strict=True):
        if field in body:
            out[attr] = string_list(body, field)
    given = {field: required_text(body, field) for field in MAPPING_FIELDS if field in body}
    if len(given) == 2:
        out["mapping"] = (given["systemPromptCategory"], given["systemPromptName"])
    return out
