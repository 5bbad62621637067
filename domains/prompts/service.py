"""The rules of prompts (domains.md section 1).

Every change is one write transaction run through ``engine.indexes.transact`` (retried only when
a concurrent writer made the backend give up; never when the data said no). Expected ETags are
compared inside that transaction, against the JSON the web layer sends.
"""

from __future__ import annotations

import builtins
import datetime as _dt
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from domains.common import Clock, Limit, Page, check_limit, etag_of, utc_now
from domains.errors import ConflictError, NotFoundError, PreconditionFailedError, ValidationError
from domains.prompts import codec, repository
from domains.prompts.commands import CreatePrompt, PatchPrompt, RevisePrompt
from domains.prompts.models import DEFAULT_MODEL, CategoryNames, Prompt
from engine import Store, Transaction
from engine.indexes import UniqueViolation, transact

T = TypeVar("T")


def _parse_bool_filter(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValidationError("isActive must be true or false", field="isActive")


def _required(value: str | None, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field} is required", field=field)
    return value


def _text_filter(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field=field)
    return value.casefold()


class PromptService:
    def __init__(self, store: Store, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def etag(prompt: Prompt) -> str:
        """The ETag of a prompt: a tag of exactly the JSON the web layer answers with."""
        return etag_of(codec.to_json(prompt))

    def _write(self, fn: Callable[[Transaction], T]) -> T:
        return transact(self.store, fn)

    @staticmethod
    def _existing(txn: Transaction, prompt_id: str) -> Prompt:
        prompt = repository.get(txn, prompt_id)
        if prompt is None:
            raise NotFoundError(f"prompt {prompt_id} does not exist", field="id")
        return prompt

    @classmethod
    def _check_etag(cls, prompt: Prompt, expected_etag: str | None) -> None:
        if expected_etag is not None and cls.etag(prompt) != expected_etag:
            raise PreconditionFailedError(
                f"prompt {prompt.id} has changed (ETag mismatch)", field="If-Match"
            )

    def _insert_in_family(
        self, txn: Transaction, fields: CreatePrompt, parent_id: str | None
    ) -> Prompt:
        """A new prompt at the family's next version, active only if the family was empty."""
        family = (fields.name, fields.category, fields.suitable_for_models)
        latest = repository.latest_in_family(txn, family)
        now = self.clock()
        prompt = Prompt(
            id=repository.next_id(txn),
            name=fields.name,
            category=fields.category,
            prompt_content=fields.prompt_content,
            version=1 if latest is None else latest.version + 1,
            parent_id=parent_id,
            is_active=latest is None,
            description=fields.description,
            suitable_for_models=fields.suitable_for_models,
            created_at=now,
            updated_at=now,
        )
        try:
            repository.insert(txn, prompt)
        except UniqueViolation as exc:  # only if a record and the index disagree
            raise ConflictError(str(exc), field="version") from exc
        return prompt

    def _deactivate_others(
        self, txn: Transaction, prompt: Prompt, now: _dt.datetime
    ) -> None:
        for other in repository.active_in_family(txn, prompt.family):
            if other.id != prompt.id:
                repository.update(txn, attrs.evolve(other, is_active=False, updated_at=now))

    # -- commands -------------------------------------------------------------------------------
    def create(self, command: CreatePrompt) -> Prompt:
        return self._write(lambda txn: self._insert_in_family(txn, command, None))

    def create_revision(self, prompt_id: str, command: RevisePrompt) -> Prompt:
        """A new version in the family of ``prompt_id`` with new content, ``parentId`` = it."""

        def go(txn: Transaction) -> Prompt:
            parent = self._existing(txn, prompt_id)
            return self._insert_in_family(
                txn,
                CreatePrompt(
                    name=parent.name,
                    category=parent.category,
                    suitable_for_models=parent.suitable_for_models,
                    description=parent.description,
                    prompt_content=command.prompt_content,
                ),
                parent.id,
            )

        return self._write(go)

    def update(
        self, prompt_id: str, patch: PatchPrompt, expected_etag: str | None = None
    ) -> Prompt:
        changes = patch.changes()

        def go(txn: Transaction) -> Prompt:
            current = self._existing(txn, prompt_id)
            self._check_etag(current, expected_etag)
            now = self.clock()
            new = attrs.evolve(current, **changes, updated_at=now)
            if new.is_active:
                others = [p for p in repository.active_in_family(txn, new.family)
                          if p.id != new.id]
                if others and changes.get("is_active") is True:
                    # An explicit isActive=true is an activation: the others step down.
                    self._deactivate_others(txn, new, now)
                elif others:
                    # An active prompt moved into a family that has its own active prompt: that
                    # one stays active, the newcomer arrives inactive (like a new revision).
                    new = attrs.evolve(new, is_active=False)
            try:
                repository.update(txn, new)
            except UniqueViolation as exc:
                field = ("name" if new.name != current.name
                         else "category" if new.category != current.category
                         else "suitableForModels")
                raise ConflictError(
                    f"a prompt named {new.name!r} in category {new.category!r} for models "
                    f"{new.suitable_for_models!r} already has version {new.version}",
                    field=field,
                ) from exc
            return new

        return self._write(go)

    def activate(self, prompt_id: str, expected_etag: str | None = None) -> Prompt:
        """Make the prompt its family's one active prompt (one transaction)."""

        def go(txn: Transaction) -> Prompt:
            current = self._existing(txn, prompt_id)
            self._check_etag(current, expected_etag)
            now = self.clock()
            self._deactivate_others(txn, current, now)
            if current.is_active:
                return current
            activated = attrs.evolve(current, is_active=True, updated_at=now)
            repository.update(txn, activated)
            return activated

        return self._write(go)

    def delete(self, prompt_id: str, expected_etag: str | None = None) -> None:
        """Hard delete, no cascade: revisions keep their (now dangling) parentId."""

        def go(txn: Transaction) -> None:
            current = self._existing(txn, prompt_id)
            self._check_etag(current, expected_etag)
            repository.delete(txn, current.id)

        self._write(go)

    # -- queries --------------------------------------------------------------------------------
    def get(self, prompt_id: str) -> Prompt:
        with self.store.begin() as txn:
            return self._existing(txn, prompt_id)

    def get_stored(self, prompt_id: str) -> bytes:
        """The prompt's stored form: ``codec.json_from_bytes`` of it is ``codec.to_json`` of the
        prompt, without building the record when the stored form already is that JSON. A caller
        may keep what it derives from these bytes: the same bytes always give the same prompt."""
        with self.store.begin() as txn:
            raw = repository.get_bytes(txn, prompt_id)
        if raw is None:
            raise NotFoundError(f"prompt {prompt_id} does not exist", field="id")
        return raw

    def list(
        self,
        *,
        name: str | None = None,
        category: str | None = None,
        is_active: bool | str | None = None,
        limit: Limit = None,
        cursor: str | None = None,
    ) -> Page[Prompt]:
        """Order: category asc, name asc, version desc (then id). ``name`` and ``category`` are
        case-insensitive substrings; ``is_active`` is exact (true walks only active prompts)."""
        n = check_limit(limit)
        name_f = _text_filter(name, "name")
        category_f = _text_filter(category, "category")
        active_f = _parse_bool_filter(is_active)

        def wanted(p: Prompt) -> bool:
            return (
                (name_f is None or name_f in p.name.casefold())
                and (category_f is None or category_f in p.category.casefold())
                and (active_f is None or p.is_active == active_f)
            )

        index = "active" if active_f is True else "listing"
        plain = name_f is None and category_f is None and active_f is not False
        with self.store.begin() as txn:
            items, next_cursor = repository.index_page(
                txn, repository.PROMPTS, index, limit=n, cursor=cursor,
                predicate=None if plain else wanted,
            )
        return Page(items=items, next_cursor=next_cursor)

    def categories(self) -> builtins.list[CategoryNames]:
        """From the active prompts: every category with its prompt names, both sorted."""
        found: dict[str, set[str]] = {}
        with self.store.begin() as txn:
            for p in repository.all_active(txn):
                found.setdefault(p.category, set()).add(p.name)
        return [CategoryNames(category=c, names=sorted(found[c])) for c in sorted(found)]

    def resolve_template(
        self, name: str | None, category: str | None, model: str | None
    ) -> Prompt:
        """Among the active prompts of (name, category), oldest id first: the first suitable
        for ``model``, else the first suitable for ``"default"``; else NotFoundError."""
        name, category, model = (_required(value, field) for value, field in (
            (name, "name"), (category, "category"), (model, "model")))
        wanted_model = model.strip()
        with self.store.begin() as txn:
            candidates = repository.active_of(txn, name, category)
        for target in (wanted_model, DEFAULT_MODEL):
            for p in candidates:
                if target in p.models():
                    return p
        raise NotFoundError(
            f"no active prompt named {name!r} in category {category!r} suits model "
            f"{wanted_model!r} or {DEFAULT_MODEL!r}"
        )

    def family_of(self, name: str, category: str) -> builtins.list[Prompt]:
        """Every prompt of exactly this name and category (all models, all versions)."""
        with self.store.begin() as txn:
            return repository.of_name_category(txn, name, category)
