"""Agent definitions and their prompt mapping (domains.md section 2): attrs classes, no I/O."""

from __future__ import annotations

import datetime as _dt

import attrs

from domains.prompts.models import Prompt

#: The eight string lists of a definition, each ``[]`` by default (attribute names).
LIST_FIELDS = (
    "tool_names",
    "input_processor_names",
    "llm_response_processor_names",
    "system_prompt_processor_names",
    "tool_execution_result_processor_names",
    "tool_invocation_preprocessor_names",
    "lifecycle_processor_names",
    "skill_names",
)


@attrs.frozen(kw_only=True)
class AgentDefinition:
    """A definition as read: the mapping fields come from the mapping record (None only if a
    store lost it; the service always writes both together)."""

    id: str
    name: str
    role: str
    description: str
    avatar_url: str | None = None
    tool_names: list[str] = attrs.Factory(list)
    input_processor_names: list[str] = attrs.Factory(list)
    llm_response_processor_names: list[str] = attrs.Factory(list)
    system_prompt_processor_names: list[str] = attrs.Factory(list)
    tool_execution_result_processor_names: list[str] = attrs.Factory(list)
    tool_invocation_preprocessor_names: list[str] = attrs.Factory(list)
    lifecycle_processor_names: list[str] = attrs.Factory(list)
    skill_names: list[str] = attrs.Factory(list)
    system_prompt_category: str | None = None
    system_prompt_name: str | None = None
    created_at: _dt.datetime
    updated_at: _dt.datetime


@attrs.frozen
class PromptMapping:
    """Which prompt family an agent definition uses; its own record, keyed by the definition id."""

    agent_definition_id: str
    prompt_name: str
    prompt_category: str


@attrs.frozen
class AgentDefinitionDetail:
    """A detail read: the definition and every prompt of its mapped (name, category)."""

    definition: AgentDefinition
    prompts: list[Prompt]
