"""What a client may send about agent teams: the request shapes (see domains/shapes.py). A node
is :class:`~domains.agent_teams.models.TeamNode` itself: its fields carry their rules."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from domains.agent_teams.models import TeamNode
from domains.shapes import UNSET, Many, OptionalText, Text, Unset, wire

READ_ONLY_FIELDS = ("id", "createdAt", "updatedAt")


@attrs.frozen(kw_only=True)
class CreateAgentTeam:
    """A new team. Blank ``role`` and ``avatarUrl`` are null; ``nodes`` absent or null is []."""

    name: str = wire(Text())
    description: str = wire(Text())
    role: str | None = wire(OptionalText(trim=True), default=None)
    avatar_url: str | None = wire(OptionalText(trim=True), default=None)
    coordinator_member_name: str = wire(Text())
    nodes: list[TeamNode] = wire(Many(TeamNode), default=attrs.Factory(list))


@attrs.frozen(kw_only=True)
class PatchAgentTeam:
    """Only the fields given change; ``nodes`` replaces wholesale."""

    READ_ONLY: ClassVar[tuple[str, ...]] = READ_ONLY_FIELDS
    name: str | Unset = wire(Text(), default=UNSET)
    description: str | Unset = wire(Text(), default=UNSET)
    role: str | None | Unset = wire(OptionalText(trim=True), default=UNSET)
    avatar_url: str | None | Unset = wire(OptionalText(trim=True), default=UNSET)
    coordinator_member_name: str | Unset = wire(Text(), default=UNSET)
    nodes: list[TeamNode] | Unset = wire(Many(TeamNode), default=UNSET)

    def changes(self) -> dict[str, Any]:
        """The given fields, by attribute name (for attrs.evolve)."""
        return {k: v for k, v in attrs.asdict(self, recurse=False).items() if v is not UNSET}
