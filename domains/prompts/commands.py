"""What a client may send about prompts: the request shapes (see domains/shapes.py)."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from domains.prompts.models import canonical_models
from domains.shapes import UNSET, Flag, OptionalText, Text, Unset, wire

#: Fields of the JSON form that a client may send back but never change.
READ_ONLY_FIELDS = ("id", "version", "parentId", "createdAt", "updatedAt")


@attrs.frozen(kw_only=True)
class CreatePrompt:
    """A new prompt; version and activity are the service's. A null or blank
    ``suitableForModels`` is ``"default"``; model lists are kept canonical."""

    name: str = wire(Text())
    category: str = wire(Text())
    prompt_content: str = wire(Text())
    description: str | None = wire(OptionalText(), default=None)
    suitable_for_models: str = wire(OptionalText(normalise=canonical_models),
                                    default=canonical_models(None))


@attrs.frozen(kw_only=True)
class RevisePrompt:
    """A new revision in a prompt's family: only the content changes."""

    prompt_content: str = wire(Text())


@attrs.frozen(kw_only=True)
class PatchPrompt:
    """Only the fields given change (UNSET: not given). ``description: null`` clears it;
    ``isActive: true`` activates like /activate."""

    READ_ONLY: ClassVar[tuple[str, ...]] = READ_ONLY_FIELDS
    name: str | Unset = wire(Text(), default=UNSET)
    category: str | Unset = wire(Text(), default=UNSET)
    prompt_content: str | Unset = wire(Text(), default=UNSET)
    description: str | None | Unset = wire(OptionalText(), default=UNSET)
    suitable_for_models: str | Unset = wire(OptionalText(normalise=canonical_models),
                                            default=UNSET)
    is_active: bool | Unset = wire(Flag(), default=UNSET)

    def changes(self) -> dict[str, Any]:
        """The given fields, by attribute name (for attrs.evolve)."""
        return {k: v for k, v in attrs.asdict(self, recurse=False).items() if v is not UNSET}
