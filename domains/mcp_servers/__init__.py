"""MCP server configurations (domains.md section 4)."""

from __future__ import annotations

from typing import Any


def collections() -> list[Any]:
    """The index-layer collections of this domain (for tools and the consistency check)."""
    from domains.mcp_servers.repository import SERVERS

    return [SERVERS]
