"""The agent-teams codec: the one place where team definitions become JSON or bytes (request bodies
are the shapes of domains/agent_teams/commands.py; the rules relating fields to each other are
the service's ``check_team``).

Stored bytes are the camelCase JSON plus a format version, ``{"v": 1, ...}``, upgraded on read
when older.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domains.agent_teams.models import AgentTeamDefinition, TeamNode
from domains.codec_support import RecordFormatError as RecordFormatError
from domains.codec_support import (
    dump_envelope,
    load_envelope,
    make_converter,
    register_camel,
)

FORMAT_VERSION = 1

converter = make_converter()
register_camel(converter, TeamNode)
register_camel(converter, AgentTeamDefinition)

_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


# -- records ------------------------------------------------------------------------------------
def to_json(team: AgentTeamDefinition) -> dict[str, Any]:
    return converter.unstructure(team, AgentTeamDefinition)


def to_bytes(team: AgentTeamDefinition) -> bytes:
    return dump_envelope(to_json(team), FORMAT_VERSION)


def from_bytes(raw: bytes) -> AgentTeamDefinition:
    doc = load_envelope(raw, "team definition", FORMAT_VERSION, _UPGRADES)
    return converter.structure(doc, AgentTeamDefinition)
