"""The engine's one error hierarchy.

Every backend wraps its driver's exceptions into these classes at one choke point, so callers
above the engine (domains, web, tools) never see an lmdb, sqlite3, SQLAlchemy or psycopg type.
Nothing here imports a web framework: the web layer maps these classes to statuses itself.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine raises."""


class ConfigurationError(EngineError):
    """The store cannot be opened as configured: unknown provider, missing extra, bad setting."""


class StoreNotFoundError(EngineError):
    """The store does not exist and the caller asked not to create it (tools open read-only)."""


class ConflictError(EngineError):
    """A write lost against a concurrent one, or a uniqueness claim is already taken."""


class WriteConflictError(ConflictError):
    """A concurrent writer made this write transaction fail (PostgreSQL: a serialization failure
    or a deadlock); nothing of it was applied and running it again may succeed. The index layer's
    ``transact`` re-runs it; raised out of ``transact`` it means its attempts ran out."""


class StoreFullError(EngineError):
    """The disk, filesystem quota or file-size limit refused the write; nothing was committed."""


class BackendUnavailableError(EngineError):
    """The backend cannot be reached right now (a database down or restarting); retry later."""


class DurabilityError(EngineError):
    """Flushing to stable storage failed (a failed fsync): the write was not acknowledged."""


class CorruptStoreError(EngineError):
    """The store's files are damaged in a way that cannot be repaired safely on open."""


class IncompatibleStoreError(CorruptStoreError):
    """The store was written by another backend or a newer format version than this code reads."""


class StoreLockedError(EngineError):
    """Another process holds a lock that this open needs (for example an exclusive writer)."""


class ReadOnlyError(EngineError):
    """A write was attempted in a read transaction or on a store opened read-only."""


class TransactionClosedError(EngineError):
    """The transaction was already committed or aborted."""


class InvalidKeyError(EngineError, ValueError):
    """A key or value is not bytes, or a key is longer than the engine's key limit."""


class UnsupportedOperationError(EngineError):
    """The backend does not offer this operation (a backup of postgresql: use pg_dump)."""


class StoreClosedError(EngineError):
    """The store was closed; open it again to use it."""
