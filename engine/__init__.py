"""The key-value engine: one interface, four interchangeable backends, an index layer on top.

Where each thing is:

- ``interface``: ``Store``, ``Transaction``, ``MAX_KEY_SIZE``, the argument checks; ``errors``: the
  one error hierarchy; ``keys``: the order-preserving tuple encoding of keys;
- ``registry``: provider name -> backend class, imported lazily by ``open_store`` (lmdb and file
  never import SQLAlchemy or psycopg);
- ``batching``: group commit (``BatchingStore``), the write path of lmdb, file and sqlite;
- ``backends``: ``lmdb``; ``file`` (``format`` on disk, in-memory ``table``, ``store``); ``sql``
  (``common`` SQLAlchemy part, ``sqlite``, ``postgresql``); ``common``: what they share;
- ``indexes``: the domain index layer (unique, ordered, sequences, TTL, roll-ups, check/repair),
  its key ``layout``, and ``transact``, the retryable write every domain write goes through, built
  on the interface alone.

Importing this package imports no backend.
"""

from engine import errors
from engine.interface import MAX_KEY_SIZE, Store, Transaction
from engine.registry import PROVIDERS, open_store

__all__ = [
    "MAX_KEY_SIZE",
    "PROVIDERS",
    "Store",
    "Transaction",
    "errors",
    "open_store",
]
