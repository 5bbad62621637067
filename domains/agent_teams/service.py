"""The rules of agent team definitions (domains.md section 3).

Stricter than the original (decision in the spec): member names are unique within a team, the
coordinator names one of the nodes, and referenceType is AGENT or AGENT_TEAM. References to other
definitions are not checked, so a team may be saved before its members. Lists are ordered by name
(code-point order), then id.
"""

from __future__ import annotations

import attrs

from domains.agent_teams import codec, repository
from domains.agent_teams.commands import CreateAgentTeam, PatchAgentTeam
from domains.agent_teams.models import AgentTeamDefinition, TeamNode
from domains.common import Clock, Limit, Page, check_limit, etag_of, utc_now
from domains.errors import ConflictError, NotFoundError, PreconditionFailedError, ValidationError
from engine import Store, Transaction
from engine.indexes import UniqueViolation, transact


def check_team(coordinator_member_name: str, nodes: list[TeamNode]) -> None:
    """Member names unique within the team; the coordinator names one of the nodes."""
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        if node.member_name in seen:
            raise ValidationError(
                f"member name {node.member_name!r} appears more than once",
                field=f"nodes[{i}].memberName",
            )
        seen.add(node.member_name)
    if coordinator_member_name not in seen:
        raise ValidationError(
            f"coordinatorMemberName {coordinator_member_name!r} names none of the nodes",
            field="coordinatorMemberName",
        )


class AgentTeamService:
    def __init__(self, store: Store, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock

    @staticmethod
    def etag(team: AgentTeamDefinition) -> str:
        return etag_of(codec.to_json(team))

    @staticmethod
    def _existing(txn: Transaction, team_id: str) -> AgentTeamDefinition:
        team = repository.get(txn, team_id)
        if team is None:
            raise NotFoundError(f"agent team definition {team_id} does not exist", field="id")
        return team

    @classmethod
    def _check_etag(cls, team: AgentTeamDefinition, expected_etag: str | None) -> None:
        if expected_etag is not None and cls.etag(team) != expected_etag:
            raise PreconditionFailedError(
                f"agent team definition {team.id} has changed (ETag mismatch)", field="If-Match"
            )

    @staticmethod
    def _conflict(name: str) -> ConflictError:
        return ConflictError(f"an agent team definition named {name!r} already exists",
                             field="name")

    def create(self, command: CreateAgentTeam) -> AgentTeamDefinition:
        # Checked before the transaction: the rules need only the command.
        check_team(command.coordinator_member_name, command.nodes)

        def go(txn: Transaction) -> AgentTeamDefinition:
            now = self.clock()
            team = AgentTeamDefinition(
                id=repository.next_id(txn), name=command.name, description=command.description,
                role=command.role, avatar_url=command.avatar_url,
                coordinator_member_name=command.coordinator_member_name, nodes=command.nodes,
                created_at=now, updated_at=now,
            )
            repository.insert(txn, team)
            return team

        try:
            return transact(self.store, go)
        except UniqueViolation as exc:
            raise self._conflict(command.name) from exc

    def update(
        self, team_id: str, patch: PatchAgentTeam, expected_etag: str | None = None
    ) -> AgentTeamDefinition:
        changes = patch.changes()

        def go(txn: Transaction) -> AgentTeamDefinition:
            current = self._existing(txn, team_id)
            self._check_etag(current, expected_etag)
            new = attrs.evolve(current, **changes, updated_at=self.clock())
            # The merged team: e.g. new nodes that leave the old coordinator out.
            check_team(new.coordinator_member_name, new.nodes)
            repository.update(txn, new)
            return new

        try:
            return transact(self.store, go)
        except UniqueViolation as exc:
            raise self._conflict(changes.get("name", "")) from exc

    def delete(self, team_id: str, expected_etag: str | None = None) -> None:
        def go(txn: Transaction) -> None:
            current = self._existing(txn, team_id)
            self._check_etag(current, expected_etag)
            repository.delete(txn, current.id)

        transact(self.store, go)

    def get(self, team_id: str) -> AgentTeamDefinition:
        with self.store.begin() as txn:
            return self._existing(txn, team_id)

    def list(self, *, limit: Limit = None, cursor: str | None = None
             ) -> Page[AgentTeamDefinition]:
        """Every team definition, ordered by name (code-point order), then id."""
        n = check_limit(limit)
        with self.store.begin() as txn:
            items, next_cursor = repository.page(txn, limit=n, cursor=cursor)
        return Page(items=items, next_cursor=next_cursor)
