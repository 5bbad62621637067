"""Indexes built from the engine interface alone, written in the same transaction as the record.

Nothing here knows a backend or a domain. Every read-modify-write (sequences, roll-ups, unique
buckets, TTL refresh) relies on one property of the engine: a write transaction sees a consistent
state and no other writer commits a change to the keys it read before it commits (lmdb, file and
sqlite run one writer at a time; postgresql runs writers in parallel at SERIALIZABLE and fails
one of two that conflict, which ``transact`` runs again). Insert-if-absent
(``put(..., overwrite=False)``) is what arbitrates every claim. So that parallel writers do not
all meet on one key, sequences hand out ids from blocks reserved per store handle (where writes
run in parallel) and roll-ups are split into shards summed at read.

Where each part is:

- :mod:`~engine.indexes.layout`: the key layout (every key this layer writes) and ``classify``,
  which tells what a raw key is;
- :mod:`~engine.indexes.definitions`: ``UniqueIndex``, ``OrderedIndex``, ``Rollup``,
  ``SequenceCounter``;
- :mod:`~engine.indexes.collection`: ``Collection``, records with their indexes;
- :mod:`~engine.indexes.ttl`: ``TtlSpace`` (idempotency keys) and ``TtlSweeper``;
- :mod:`~engine.indexes.check`: ``check`` and ``repair`` of indexes against records;
- :mod:`~engine.indexes.conflicts`: the conflicts the layer raises;
- :mod:`~engine.indexes.writes`: ``transact``, the retryable write every domain write goes
  through, and the attempt context that hands id blocks over after commit.
"""

from engine.indexes.check import CheckReport, Problem, check, repair
from engine.indexes.collection import Collection
from engine.indexes.conflicts import (
    DuplicateRecord,
    IndexConflict,
    RecordNotFound,
    UniqueViolation,
)
from engine.indexes.definitions import (
    OrderedIndex,
    Rollup,
    SequenceCounter,
    UniqueIndex,
    from_micros,
    to_micros,
)
from engine.indexes.layout import NS_COLLECTION, NS_SEQUENCE, NS_TTL
from engine.indexes.ttl import TtlSpace, TtlSweeper
from engine.indexes.writes import transact

__all__ = [
    "NS_COLLECTION",
    "NS_SEQUENCE",
    "NS_TTL",
    "CheckReport",
    "Collection",
    "DuplicateRecord",
    "IndexConflict",
    "OrderedIndex",
    "Problem",
    "RecordNotFound",
    "Rollup",
    "SequenceCounter",
    "TtlSpace",
    "TtlSweeper",
    "UniqueIndex",
    "UniqueViolation",
    "check",
    "from_micros",
    "repair",
    "to_micros",
    "transact",
]
