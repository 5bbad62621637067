"""Prompt records (domains.md section 1): plain attrs classes, no I/O."""

from __future__ import annotations

import datetime as _dt

import attrs

#: What a blank or absent ``suitableForModels`` becomes; resolution falls back to it.
DEFAULT_MODEL = "default"


@attrs.frozen
class Prompt:
    id: str
    name: str
    category: str
    prompt_content: str
    version: int
    parent_id: str | None
    is_active: bool
    description: str | None
    suitable_for_models: str
    created_at: _dt.datetime
    updated_at: _dt.datetime

    @property
    def family(self) -> tuple[str, str, str]:
        """(name, category, suitableForModels): at most one active prompt per family."""
        return (self.name, self.category, self.suitable_for_models)

    def models(self) -> list[str]:
        """The comma-split model names this prompt is suitable for."""
        return split_models(self.suitable_for_models)


@attrs.frozen
class CategoryNames:
    """One entry of the categories answer: a category and the names of its active prompts."""

    category: str
    names: list[str]


def split_models(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def canonical_models(text: str | None) -> str:
    """Trimmed, comma-joined model names without blanks; nothing left → ``"default"``.

    ``"gpt-4, claude "`` and ``"gpt-4,claude"`` are one family, so the canonical form is what is
    stored and compared.
    """
    parts = split_models(text)
    return ",".join(parts) if parts else DEFAULT_MODEL
