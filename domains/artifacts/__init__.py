"""Agent artifacts (domains.md section 6)."""

from __future__ import annotations

from typing import Any


def collections() -> list[Any]:
    """The index-layer collections of this domain (for tools and the consistency check)."""
    from domains.artifacts.repository import ARTIFACTS

    return [ARTIFACTS]
