"""The engine interface: :class:`Store`, :class:`Transaction`, the key limit and the checks every
backend applies to its arguments.

The interface is py-lmdb's in shape: ``store.begin(write=...)`` gives a transaction that is a
context manager (commit on success, abort on exception) and offers ``get``, ``put`` (with
``overwrite=False`` as the atomic insert-if-absent), ``delete`` and an ordered ``scan``. Keys and
values are ``bytes``; keys are ordered bytewise on every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from engine import errors

#: The engine's key limit, the same on every backend so that any store can migrate to any other.
#: LMDB allows 511 bytes and the lmdb backend spends one byte on a key prefix (so that the empty
#: key, which LMDB refuses, is a key like any other).
MAX_KEY_SIZE = 510


def check_key(key: Any) -> bytes:
    if type(key) is not bytes:
        if isinstance(key, (bytearray, memoryview)):
            key = bytes(key)
        else:
            raise errors.InvalidKeyError(f"keys are bytes, not {type(key).__name__}")
    if len(key) > MAX_KEY_SIZE:
        raise errors.InvalidKeyError(
            f"key of {len(key)} bytes exceeds the engine limit of {MAX_KEY_SIZE} bytes"
        )
    return key


def check_value(value: Any) -> bytes:
    if type(value) is not bytes:
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        raise errors.InvalidKeyError(f"values are bytes, not {type(value).__name__}")
    return value

def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key that starts with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def scan_bounds(
    start: bytes | None, end: bytes | None, prefix: bytes | None
) -> tuple[bytes, bytes | None]:
    """Normalise scan arguments to a half-open range ``[lo, hi)``; ``hi`` None means unbounded."""
    lo = b"" if start is None else check_key(start)
    hi = None if end is None else check_key(end)
    if prefix is not None:
        prefix = check_key(prefix)
        if prefix > lo:
            lo = prefix
        p_end = prefix_end(prefix)
        if p_end is not None and (hi is None or p_end < hi):
            hi = p_end
    return lo, hi


def limited(it: Iterator[tuple[bytes, bytes]], limit: int | None) -> Iterator[tuple[bytes, bytes]]:
    if limit is None:
        yield from it
        return
    if limit <= 0:
        return
    n = 0
    for item in it:
        yield item
        n += 1
        if n >= limit:
            return


def check_limit(limit: int | None) -> int | None:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise errors.InvalidKeyError(f"limit must be a non-negative int, not {limit!r}")
    return limit


class Transaction(ABC):
    """A transaction: use it as a context manager, or call commit() / abort() yourself."""

    # No instance dict of its own: a subclass with __slots__ (the lmdb reader, made once per
    # point read) then has none at all. Subclasses without __slots__ get one as usual.
    __slots__ = ()

    write: bool = False
    _closed: bool = False
    #: True for a write transaction that runs alongside other writers (postgresql) rather than
    #: alone: of two that conflict, one fails with WriteConflictError, for the caller to run again
    #: (``engine.indexes.transact``), and the index layer spreads its counters over several keys.
    parallel_writes: bool = False

    @abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None."""

    def put(self, key: bytes, value: bytes, *, overwrite: bool = True) -> bool:
        """Store ``value``; with ``overwrite=False`` only if ``key`` is absent. True if written."""
        raise errors.ReadOnlyError("put() in a read transaction")

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; True if it was present."""
        raise errors.ReadOnlyError("delete() in a read transaction")

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with ``start <= key < end`` (and starting with ``prefix``), in key order.

        Reverse scans yield the same range from the highest key down. The iterator is valid only
        while the transaction is open.
        """
        # The arguments are checked here, once for every backend, before any backend work; a
        # backend implements _scan over the normalised half-open range.
        self._check_open()
        check_limit(limit)
        lo, hi = scan_bounds(start, end, prefix)
        if hi is not None and hi <= lo:
            return iter(())
        return self._scan(lo, hi, reverse, limit)

    @abstractmethod
    def _scan(
        self, lo: bytes, hi: bytes | None, reverse: bool, limit: int | None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs of the non-empty range ``[lo, hi)`` (``hi`` None: unbounded), in key order
        (reversed if asked), at most ``limit`` of them (None: all)."""

    def _check_open(self) -> None:
        """Raise if the transaction (or, where the backend can tell, its store) is closed."""
        if self._closed:
            raise errors.TransactionClosedError("the transaction is already closed")

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._closed:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class Store(ABC):
    """A key-value store. Thread-safe: share one Store between the threads of a process."""

    provider: str = ""
    readonly: bool = False

    @abstractmethod
    def begin(self, write: bool = False) -> Transaction: ...

    @abstractmethod
    def close(self) -> None: ...

    @property
    @abstractmethod
    def metadata(self) -> dict[str, Any]:
        """What the store recorded about itself at creation (format, version, backend)."""

    def stats(self) -> dict[str, Any]:
        """Backend facts for operators (sizes, map use); backends add what they know."""
        return {"provider": self.provider}

    def backup(self, directory: str, *, compact: bool = True) -> None:
        """Copy the store, consistent as of one moment, into ``directory`` (created if absent,
        else empty) while it stays in use; the copy opens as a store of the same provider there.

        ``compact`` lets a backend that can leave out free space do so. Backends whose database
        has its own standard tool for this raise UnsupportedOperationError.
        """
        raise errors.UnsupportedOperationError(
            f"the {self.provider} backend offers no backup of its own"
        )

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
