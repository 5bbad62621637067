"""Prompts (domains.md section 1): versioned families with one active prompt each."""

from __future__ import annotations

from typing import Any


def collections() -> list[Any]:
    """The index-layer collections of this domain (for tools and the consistency check)."""
    from domains.prompts.repository import PROMPTS

    return [PROMPTS]
