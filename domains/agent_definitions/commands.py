"""What a client may send about agent definitions: the request shapes (see domains/shapes.py)."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from domains.shapes import UNSET, OptionalText, Text, TextList, Unset, wire

READ_ONLY_FIELDS = ("id", "createdAt", "updatedAt")


@attrs.frozen(kw_only=True)
class CreateAgentDefinition:
    """A new definition with its prompt mapping (both required). A blank ``avatarUrl`` is null;
    the eight lists are ``[]`` when absent or null."""

    name: str = wire(Text())
    role: str = wire(Text())
    description: str = wire(Text())
    avatar_url: str | None = wire(OptionalText(trim=True), default=None)
    tool_names: list[str] = wire(TextList(), default=attrs.Factory(list))
    input_processor_names: list[str] = wire(TextList(), default=attrs.Factory(list))
    llm_response_processor_names: list[str] = wire(TextList(), default=attrs.Factory(list))
    system_prompt_processor_names: list[str] = wire(TextList(), default=attrs.Factory(list))
    tool_execution_result_processor_names: list[str] = wire(
        TextList(), default=attrs.Factory(list))
    tool_invocation_preprocessor_names: list[str] = wire(TextList(),
                                                         default=attrs.Factory(list))
    lifecycle_processor_names: list[str] = wire(TextList(), default=attrs.Factory(list))
    skill_names: list[str] = wire(TextList(), default=attrs.Factory(list))
    system_prompt_category: str = wire(Text())
    system_prompt_name: str = wire(Text())


@attrs.frozen(kw_only=True)
class PatchAgentDefinition:
    """Only the fields given change; lists replace wholesale (null: ``[]``). The mapping fields
    are checked whenever given but change the mapping only when both are given (domains.md 2)."""

    READ_ONLY: ClassVar[tuple[str, ...]] = READ_ONLY_FIELDS
    name: str | Unset = wire(Text(), default=UNSET)
    role: str | Unset = wire(Text(), default=UNSET)
    description: str | Unset = wire(Text(), default=UNSET)
    avatar_url: str | None | Unset = wire(OptionalText(trim=True), default=UNSET)
    tool_names: list[str] | Unset = wire(TextList(), default=UNSET)
    input_processor_names: list[str] | Unset = wire(TextList(), default=UNSET)
    llm_response_processor_names: list[str] | Unset = wire(TextList(), default=UNSET)
    system_prompt_processor_names: list[str] | Unset = wire(TextList(), default=UNSET)
    tool_execution_result_processor_names: list[str] | Unset = wire(TextList(), default=UNSET)
    tool_invocation_preprocessor_names: list[str] | Unset = wire(TextList(), default=UNSET)
    lifecycle_processor_names: list[str] | Unset = wire(TextList(), default=UNSET)
    skill_names: list[str] | Unset = wire(TextList(), default=UNSET)
    system_prompt_category: str | Unset = wire(Text(), default=UNSET)
    system_prompt_name: str | Unset = wire(Text(), default=UNSET)

    def mapping(self) -> tuple[str, str] | None:
        """(category, name) when both are given, else None (the mapping stays)."""
        if isinstance(self.system_prompt_category, str) and \
                isinstance(self.system_prompt_name, str):
            return (self.system_prompt_category, self.system_prompt_name)
        return None

    def changes(self) -> dict[str, Any]:
        """The given fields other than the mapping, by attribute name (for attrs.evolve)."""
        return {k: v for k, v in attrs.asdict(self, recurse=False).items()
                if v is not UNSET and k not in ("system_prompt_category", "system_prompt_name")}
