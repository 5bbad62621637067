"""Agent team definitions on the engine's index layer.

Key layout (tuples packed by engine.keys)::

    ("c", "agent_team_definitions", "r", id)                   -> team bytes
    ("c", "agent_team_definitions", "u", "name", name)         -> id   (names are unique)
    ("c", "agent_team_definitions", "o", "by_name", name, id)  the list order: name asc, then id
    ("q", "agent_team_definitions")                            the id sequence
"""

from __future__ import annotations

from domains.agent_teams import codec
from domains.agent_teams.models import AgentTeamDefinition
from domains.prompts.repository import MAX_ID_LENGTH, index_page
from engine import Transaction
from engine.indexes import Collection, OrderedIndex, UniqueIndex

TEAMS = Collection(
    "agent_team_definitions",
    codec.from_bytes,
    unique=[UniqueIndex("name", lambda t: t.name)],
    ordered=[OrderedIndex("by_name", lambda t: t.name)],
)


def next_id(txn: Transaction) -> str:
    return TEAMS.next_id(txn)


def get(txn: Transaction, team_id: str) -> AgentTeamDefinition | None:
    if not isinstance(team_id, str) or not 0 < len(team_id) <= MAX_ID_LENGTH:
        return None  # no such id can exist (and an overlong one is no key)
    return TEAMS.get_record(txn, team_id)


def insert(txn: Transaction, team: AgentTeamDefinition) -> None:
    TEAMS.insert(txn, team.id, codec.to_bytes(team), team)


def update(txn: Transaction, team: AgentTeamDefinition) -> None:
    TEAMS.update(txn, team.id, codec.to_bytes(team), team)


def delete(txn: Transaction, team_id: str) -> bool:
    return TEAMS.delete(txn, team_id)


def page(
    txn: Transaction, *, limit: int, cursor: str | None
) -> tuple[list[AgentTeamDefinition], str | None]:
    return index_page(txn, TEAMS, "by_name", limit=limit, cursor=cursor)
