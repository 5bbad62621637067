"""Agent team definitions (domains.md section 3): attrs classes, no I/O."""

from __future__ import annotations

import datetime as _dt

import attrs

REFERENCE_TYPES = ("AGENT", "AGENT_TEAM")


@attrs.frozen
class TeamNode:
    member_name: str
    reference_id: str
    reference_type: str  # one of REFERENCE_TYPES


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
