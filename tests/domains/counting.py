"""A store wrapper that counts what the engine is asked: write transactions begun, point reads,
and keys yielded by scans. Tests use it to prove how much a query reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from engine import Store, Transaction


class Counts:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.write_txns = 0
        self.read_txns = 0
        self.gets = 0
        self.scanned = 0

    @property
    def reads(self) -> int:
        """Every key the engine handed back or looked up: point reads plus scanned keys."""
        return self.gets + self.scanned


class CountingTransaction(Transaction):
    def __init__(self, inner: Transaction, counts: Counts) -> None:
        self._inner = inner
        self._counts = counts
        self.write = inner.write

    def get(self, key: bytes) -> bytes | None:
        self._counts.gets += 1
        return self._inner.get(key)

    def put(self, key: bytes, value: bytes, *, overwrite: bool = True) -> bool:
        return self._inner.put(key, value, overwrite=overwrite)

    def delete(self, key: bytes) -> bool:
        return self._inner.delete(key)

    def _scan(
        self, lo: bytes, hi: bytes | None, reverse: bool, limit: int | None
    ) -> Iterator[tuple[bytes, bytes]]:
        return self._counted(self._inner.scan(lo, hi, reverse=reverse, limit=limit))

    def _counted(self, pairs: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        for item in pairs:
            self._counts.scanned += 1
            yield item

    def commit(self) -> None:
        self._inner.commit()

    def abort(self) -> None:
        self._inner.abort()

    @property
    def closed(self) -> bool:
        return self._inner.closed

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._inner.__exit__(exc_type, exc, tb)


class CountingStore(Store):
    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.provider = inner.provider
        self.counts = Counts()

    def begin(self, write: bool = False) -> Transaction:
        if write:
            self.counts.write_txns += 1
        else:
            self.counts.read_txns += 1
        return CountingTransaction(self.inner.begin(write=write), self.counts)

    def close(self) -> None:
        self.inner.close()

    @property
    def metadata(self) -> dict[str, Any]:
        return self.inner.metadata
