"""The index layer's conflicts: answers about the data, never retried (``transact``, in
:mod:`~engine.indexes.writes`, retries only what a concurrent writer made fail)."""

from __future__ import annotations

from typing import Any

from engine import errors


class IndexConflict(errors.ConflictError):
    """A conflict decided by the data (not by a concurrent writer): retrying cannot help."""


class UniqueViolation(IndexConflict):
    """A unique index already maps ``value`` to another record (``holder``)."""

    def __init__(self, collection: str, index: str, value: tuple[Any, ...], holder: str | None):
        self.collection = collection
        self.index = index
        self.value = value[0] if len(value) == 1 else value
        self.holder = holder
        super().__init__(
            f"{collection}.{index}: {self.value!r} is already taken"
            + (f" by record {holder}" if holder is not None else "")
        )


class DuplicateRecord(IndexConflict):
    """insert() of an id that already exists."""

    def __init__(self, collection: str, record_id: str):
        self.collection = collection
        self.record_id = record_id
        super().__init__(f"{collection}: record {record_id} already exists")


class RecordNotFound(errors.EngineError, LookupError):
    """update() of an id that does not exist."""

    def __init__(self, collection: str, record_id: str):
        self.collection = collection
        self.record_id = record_id
        super().__init__(f"{collection}: no record {record_id}")
