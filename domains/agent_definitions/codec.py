"""The agent-definitions codec: the one place where definitions and their prompt mappings
become JSON or bytes (request bodies are the shapes of domains/agent_definitions/commands.py).

A stored definition holds no mapping fields (the mapping is its own record); both are stored as
their camelCase JSON plus a format version, ``{"v": 1, ...}``, upgraded on read when older.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from domains.agent_definitions.models import (
    AgentDefinition,
    AgentDefinitionDetail,
    PromptMapping,
)
from domains.codec_support import RecordFormatError as RecordFormatError
from domains.codec_support import (
    dump_envelope,
    load_envelope,
    make_converter,
    register_camel,
)
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
