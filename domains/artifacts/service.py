"""The rules of agent artifacts (domains.md section 6): append-only create, and the list of an
agent run ordered by createdAt (then id, for artifacts of the same millisecond)."""

from __future__ import annotations

import datetime as _dt

from domains.artifacts import repository
from domains.artifacts.commands import CreateArtifact
from domains.artifacts.models import MAX_AGENT_ID_BYTES, Artifact, infer_type
from domains.common import Clock, Limit, Page, check_limit, utc_now
from domains.errors import NotFoundError
from domains.shapes import Text
from engine import Store, Transaction
from engine.indexes import transact

#: The agent run whose artifacts are listed: the rule of CreateArtifact.agentId.
AGENT_ID = Text(max_bytes=MAX_AGENT_ID_BYTES)


class ArtifactService:
    def __init__(self, store: Store, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock

    def _now(self) -> _dt.datetime:
        now = self.clock()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def create(self, command: CreateArtifact) -> Artifact:
        """Type inferred from the path's extension when not given. createdAt = updatedAt = now."""
        kind = command.type if command.type is not None else infer_type(command.path)

        def go(txn: Transaction) -> Artifact:
            now = self._now()
            artifact = Artifact(
                id=repository.next_id(txn), agent_id=command.agent_id, path=command.path,
                type=kind, workspace_root=command.workspace_root, url=command.url,
                created_at=now, updated_at=now,
            )
            repository.insert(txn, artifact)
            return artifact

        return transact(self.store, go)

    def get(self, artifact_id: str) -> Artifact:
        with self.store.begin() as txn:
            artifact = repository.get(txn, artifact_id)
        if artifact is None:
            raise NotFoundError(f"artifact {artifact_id} does not exist", field="id")
        return artifact

    def list(
        self, agent_id: str | None, *, limit: Limit = None, cursor: str | None = None
    ) -> Page[Artifact]:
        """The artifacts of one agent run by createdAt; an unknown run has none."""
        agent = AGENT_ID.check(agent_id, "agentId")
        n = check_limit(limit)
        with self.store.begin() as txn:
            items, next_cursor = repository.page_of_agent(txn, agent, limit=n, cursor=cursor)
        return Page(items, next_cursor)

    list_by_agent = list
