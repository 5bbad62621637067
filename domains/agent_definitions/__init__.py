"""Agent definitions and their system-prompt mapping (domains.md section 2)."""

from __future__ import annotations

from typing import Any


def collections() -> list[Any]:
    """The index-layer collections of this domain (for tools and the consistency check)."""
    from domains.agent_definitions.repository import DEFINITIONS, MAPPINGS

    return [DEFINITIONS, MAPPINGS]
