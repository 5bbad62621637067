"""The rules of agent team definitions (domains.md section 3).

Stricter than the original (decision in the spec): member names are unique within a team, the
coordinator names one of the nodes, and referenceType is AGENT or AGENT_TEAM. References to other
definitions are not checked, so a team may be saved before its members. Lists are ordered by name
(code-point order), then id.
"""

from __future__ import annotations

from typing import Any

import attrs

from domains.agent_teams import codec, repository
from domains.agent_teams.models import AgentTeamDefinition
from domains.common import Clock, Page, check_limit, etag_of, utc_now
from domains.errors import ConflictError, NotFoundError, PreconditionFailedError
from engine import Store, Transaction
from engine.indexes import UniqueViolation, transact


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

    def create(self, payload: Any) -> AgentTeamDefinition:
        fields = codec.parse_create(payload)
        # Checked before the transaction: the rules need only the payload.
        codec.check_team(fields["coordinator_member_name"], fields["nodes"])

        def go(txn: Transaction) -> AgentTeamDefinition:
            now = self.clock()
            team = AgentTeamDefinition(
                id=repository.next_id(txn), created_at=now, updated_at=now, **fields
            )
            repository.insert(txn, team)
            return team

        try:
            return transact(self.store, go)
        except UniqueViolation as exc:
            raise self._conflict(fields["name"]) from exc

    def update(
        self, team_id: str, patch: Any, expected_etag: str | None = None
    ) -> AgentTeamDefinition:
        changes = codec.parse_patch(patch)

        def go(txn: Transaction) -> AgentTeamDefinition:
            current = self._existing(txn, team_id)
            self._check_etag(current, expected_etag)
            new = attrs.evolve(current, **changes, updated_at=self.clock())
            # The merged team: e.g. new nodes that leave the old coordinator out.
            codec.check_team(new.coordinator_member_name, new.nodes)
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

    def list(self, *, limit: Any = None, cursor: str | None = None
             ) -> Page[AgentTeamDefinition]:
        """Every team definition, ordered by name (code-point order), then id."""
        n = check_limit(limit)
        with self.store.begin() as txn:
            items, next_cursor = repository.page(txn, limit=n, cursor=cursor)
        return Page(items=items, next_cursor=next_cursor)
