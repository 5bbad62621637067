"""Token usage (domains.md section 5)."""

from __future__ import annotations

from typing import Any


def collections() -> list[Any]:
    """The index-layer collections of this domain (for tools and the consistency check)."""
    from domains.token_usage.repository import RECORDS

    return [RECORDS]
