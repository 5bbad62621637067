"""Agent team definitions (domains.md section 3)."""

from __future__ import annotations

from typing import Any


def collections() -> list[Any]:
    """The index-layer collections of this domain (for tools and the consistency check)."""
    from domains.agent_teams.repository import TEAMS

    return [TEAMS]
