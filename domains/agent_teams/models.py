"""Agent team definitions (domains.md section 3): attrs classes, no I/O."""

from __future__ import annotations

import datetime as _dt

import attrs

from domains.shapes import Choice, Text, wire

REFERENCE_TYPES = ("AGENT", "AGENT_TEAM")


@attrs.frozen
class TeamNode:
    """A member of a team: both a record part and a request shape (its fields carry rules)."""

    member_name: str = wire(Text())
    reference_id: str = wire(Text())
    reference_type: str = wire(Choice(REFERENCE_TYPES))


@attrs.frozen(kw_only=True)
class AgentTeamDefinition:
    id: str
    name: str
    description: str
    role: str | None = None
    avatar_url: str | None = None
    coordinator_member_name: str
    nodes: list[TeamNode] = attrs.Factory(list)
    created_at: _dt.datetime
    updated_at: _dt.datetime
