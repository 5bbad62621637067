"""Agent definitions and their prompt mappings on the engine's index layer.

Key layout (tuples packed by engine.keys)::

    ("c", "agent_definitions", "r", id)                     -> definition bytes (no mapping)
    ("c", "agent_definitions", "u", "name", name)           -> id   (names are unique)
    ("c", "agent_definitions", "o", "by_name", name, id)    the list order: name asc, then id
    ("c", "agent_prompt_mappings", "r", definition id)      -> mapping bytes
    ("q", "agent_definitions")                              the id sequence

Definitions and mappings are written and deleted together, in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

import attrs

from domains.agent_definitions import codec
from domains.agent_definitions.models import AgentDefinition, PromptMapping
from domains.prompts.repository import MAX_ID_LENGTH, index_page
from engine import Transaction
from engine.indexes import Collection, OrderedIndex, UniqueIndex

DEFINITIONS = Collection(
    "agent_definitions",
    codec.from_bytes,
    unique=[UniqueIndex("name", lambda d: d.name)],
    ordered=[OrderedIndex("by_name", lambda d: d.name)],
)
MAPPINGS = Collection("agent_prompt_mappings", codec.mapping_from_bytes)


def _with_mapping(txn: Transaction, definition: AgentDefinition) -> AgentDefinition:
    mapping = MAPPINGS.get_record(txn, definition.id)
    if mapping is None:
        return definition
    return attrs.evolve(
        definition,
        system_prompt_category=mapping.prompt_category,
        system_prompt_name=mapping.prompt_name,
    )


def _mapping_of(definition: AgentDefinition) -> PromptMapping:
    if definition.system_prompt_category is None or definition.system_prompt_name is None:
        raise ValueError(f"agent definition {definition.id} has no prompt mapping to store")
    return PromptMapping(
        agent_definition_id=definition.id,
        prompt_name=definition.system_prompt_name,
        prompt_category=definition.system_prompt_category,
    )


def next_id(txn: Transaction) -> str:
    return DEFINITIONS.next_id(txn)


def get(txn: Transaction, definition_id: str) -> AgentDefinition | None:
    if not isinstance(definition_id, str) or not 0 < len(definition_id) <= MAX_ID_LENGTH:
        return None  # no such id can exist (and an overlong one is no key)
    definition = DEFINITIONS.get_record(txn, definition_id)
    return None if definition is None else _with_mapping(txn, definition)


def insert(txn: Transaction, definition: AgentDefinition) -> None:
    """The definition, its name claim and its mapping (UniqueViolation: nothing written)."""
    DEFINITIONS.insert(txn, definition.id, codec.to_bytes(definition), definition)
    mapping = _mapping_of(definition)
    MAPPINGS.insert(txn, definition.id, codec.mapping_to_bytes(mapping), mapping)


def update(txn: Transaction, definition: AgentDefinition, *, mapping_changed: bool) -> None:
    DEFINITIONS.update(txn, definition.id, codec.to_bytes(definition), definition)
    if mapping_changed:
        mapping = _mapping_of(definition)
        MAPPINGS.put(txn, definition.id, codec.mapping_to_bytes(mapping), mapping)


def delete(txn: Transaction, definition_id: str) -> bool:
    MAPPINGS.delete(txn, definition_id)
    return DEFINITIONS.delete(txn, definition_id)


def page(txn: Transaction, *, limit: int, cursor: str | None) -> tuple[list[Any], str | None]:
    items, next_cursor = index_page(txn, DEFINITIONS, "by_name", limit=limit, cursor=cursor)
    return [_with_mapping(txn, d) for d in items], next_cursor
