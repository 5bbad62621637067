"""The index layer's conflicts (answers about the data, never retried) and :func:`transact`,
which retries what a concurrent writer made fail."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from engine import errors
from engine.interface import Store, Transaction

T = TypeVar("T")


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


# -- retrying what a concurrent writer made fail -------------------------------------------------
def transact(
    store: Store, fn: Callable[[Transaction], T], *, attempts: int = 8, backoff: float = 0.01
) -> T:
    """Run ``fn(txn)`` in a write transaction, again if a concurrent writer made it fail.

    Only a backend ConflictError (a serialization failure or deadlock) is retried; an
    :class:`IndexConflict` is an answer about the data and propagates at once. ``fn`` may run
    more than once, so it should have no effects outside the transaction.
    """
    for attempt in range(attempts):
        try:
            with store.begin(write=True) as txn:
                return fn(txn)
        except IndexConflict:
            raise
        except errors.ConflictError:
            if attempt == attempts - 1:
                raise
            time.sleep(backoff * (2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")
