"""The rules of agent definitions and their prompt mapping (domains.md section 2).

A definition and its mapping are written, changed and deleted in one write transaction; the
prompt-family check runs inside that transaction, before any write, so a definition can never be
saved pointing at a family that a concurrent delete just emptied. Lists are ordered by name
(code-point order), then id.
"""

from __future__ import annotations

from typing import Any

import attrs

from domains.agent_definitions import codec, repository
from domains.agent_definitions.commands import CreateAgentDefinition, PatchAgentDefinition
from domains.agent_definitions.models import AgentDefinition, AgentDefinitionDetail
from domains.common import Clock, Limit, Page, check_limit, etag_of, utc_now
from domains.errors import ConflictError, NotFoundError, PreconditionFailedError, ValidationError
from domains.prompts import repository as prompts
from engine import Store, Transaction
from engine.indexes import UniqueViolation, transact


class AgentDefinitionService:
    def __init__(self, store: Store, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock

    @staticmethod
    def etag(definition: AgentDefinition) -> str:
        """The ETag of a definition: a tag of exactly its JSON (without embedded prompts)."""
        return etag_of(codec.to_json(definition))

    @staticmethod
    def _existing(txn: Transaction, definition_id: str) -> AgentDefinition:
        definition = repository.get(txn, definition_id)
        if definition is None:
            raise NotFoundError(f"agent definition {definition_id} does not exist", field="id")
        return definition

    @classmethod
    def _check_etag(cls, definition: AgentDefinition, expected_etag: str | None) -> None:
        if expected_etag is not None and cls.etag(definition) != expected_etag:
            raise PreconditionFailedError(
                f"agent definition {definition.id} has changed (ETag mismatch)", field="If-Match"
            )

    @staticmethod
    def _check_family(txn: Transaction, category: str, name: str) -> None:
        if not prompts.of_name_category(txn, name, category, limit=1):
            raise ValidationError(
                f"no prompt named {name!r} exists in category {category!r}",
                field="systemPromptName",
            )

    @staticmethod
    def _conflict(exc: UniqueViolation, name: str) -> ConflictError:
        return ConflictError(f"an agent definition named {name!r} already exists", field="name")

    # -- commands -------------------------------------------------------------------------------
    def create(self, command: CreateAgentDefinition) -> AgentDefinition:
        def go(txn: Transaction) -> AgentDefinition:
            self._check_family(txn, command.system_prompt_category, command.system_prompt_name)
            now = self.clock()
            # The command's fields are the definition's own, by the same names.
            definition = AgentDefinition(
                id=repository.next_id(txn), created_at=now, updated_at=now,
                **attrs.asdict(command, recurse=False),
            )
            repository.insert(txn, definition)
            return definition

        try:
            return transact(self.store, go)
        except UniqueViolation as exc:
            raise self._conflict(exc, command.name) from exc

    def update(
        self, definition_id: str, patch: PatchAgentDefinition, expected_etag: str | None = None
    ) -> AgentDefinition:
        changes = patch.changes()
        mapping = patch.mapping()

        def go(txn: Transaction) -> AgentDefinition:
            current = self._existing(txn, definition_id)
            self._check_etag(current, expected_etag)
            new = attrs.evolve(current, **changes, updated_at=self.clock())
            if mapping is not None:
                category, name = mapping
                self._check_family(txn, category, name)
                new = attrs.evolve(new, system_prompt_category=category, system_prompt_name=name)
            repository.update(txn, new, mapping_changed=mapping is not None)
            return new

        try:
            return transact(self.store, go)
        except UniqueViolation as exc:
            raise self._conflict(exc, changes.get("name", "")) from exc

    def delete(self, definition_id: str, expected_etag: str | None = None) -> None:
        """The definition and its mapping, together."""

        def go(txn: Transaction) -> None:
            current = self._existing(txn, definition_id)
            self._check_etag(current, expected_etag)
            repository.delete(txn, current.id)

        transact(self.store, go)

    # -- queries --------------------------------------------------------------------------------
    def get(self, definition_id: str) -> AgentDefinition:
        with self.store.begin() as txn:
            return self._existing(txn, definition_id)

    def get_with_prompts(self, definition_id: str) -> AgentDefinitionDetail:
        """The definition and every prompt of its mapped name and category (all versions and
        models, ordered by suitableForModels then version), read in one transaction."""
        with self.store.begin() as txn:
            definition = self._existing(txn, definition_id)
            family: list[Any] = []
            if definition.system_prompt_name is not None and \
                    definition.system_prompt_category is not None:
                family = prompts.of_name_category(
                    txn, definition.system_prompt_name, definition.system_prompt_category
                )
        return AgentDefinitionDetail(definition=definition, prompts=family)

    def list(self, *, limit: Limit = None, cursor: str | None = None) -> Page[AgentDefinition]:
        """Every definition, ordered by name (code-point order), then id."""
        n = check_limit(limit)
        with self.store.begin() as txn:
            items, next_cursor = repository.page(txn, limit=n, cursor=cursor)
        return Page(items=items, next_cursor=next_cursor)
