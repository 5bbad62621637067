"""The file backend's committed records in memory: a dict, a chunked sorted key list, and the
per-key history that lets old readers keep seeing their version (MVCC in one process)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator


class SortedKeys:
    """Keys in bytewise order, kept as a list of sorted chunks.

    One flat sorted list would make every insert or delete move the whole tail of the list (an
    O(n) memmove that dominated a commit at a few hundred thousand keys); here it moves at most
    one chunk, and only a chunk split or merge touches the (n / LOAD)-long list of chunk maxima.
    """

    __slots__ = ("_chunks", "_maxes", "_len")

    LOAD = 1000

    def __init__(self, ordered: list[bytes] | None = None) -> None:
        ordered = ordered or []
        self._chunks = [ordered[i : i + self.LOAD] for i in range(0, len(ordered), self.LOAD)]
        self._maxes = [chunk[-1] for chunk in self._chunks]
        self._len = len(ordered)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            yield from chunk

    def add(self, key: bytes) -> None:
        """Insert ``key``, which must not be present."""
        chunks, maxes = self._chunks, self._maxes
        self._len += 1
        if not chunks:
            chunks.append([key])
            maxes.append(key)
            return
        i = bisect.bisect_left(maxes, key)
        if i == len(maxes):
            i -= 1
            chunks[i].append(key)
            maxes[i] = key
        else:
            bisect.insort(chunks[i], key)
        chunk = chunks[i]
        if len(chunk) > 2 * self.LOAD:
            half = len(chunk) // 2
            chunks[i : i + 1] = [chunk[:half], chunk[half:]]
            maxes[i : i + 1] = [chunk[half - 1], chunk[-1]]

    def remove(self, key: bytes) -> None:
        """Remove ``key``, which must be present."""
        chunks, maxes = self._chunks, self._maxes
        i = bisect.bisect_left(maxes, key)
        chunk = chunks[i]
        del chunk[bisect.bisect_left(chunk, key)]
        self._len -= 1
        if not chunk:
            del chunks[i]
            del maxes[i]
            return
        maxes[i] = chunk[-1]
        if len(chunk) < self.LOAD // 4 and len(chunks) > 1:
            # Keep chunks from dwindling to a list of near-empty ones after many deletes.
            j = i if i + 1 < len(chunks) else i - 1
            merged = chunks[j] + chunks[j + 1]
            chunks[j : j + 2] = [merged]
            maxes[j : j + 2] = [merged[-1]]

    def forward(self, key: bytes, inclusive: bool, n: int) -> list[bytes]:
        """Up to ``n`` keys from ``key`` on (past it unless ``inclusive``), ascending."""
        find = bisect.bisect_left if inclusive else bisect.bisect_right
        chunks = self._chunks
        i = find(self._maxes, key)
        out: list[bytes] = []
        if i < len(chunks):
            chunk = chunks[i]
            j = find(chunk, key)
            out.extend(chunk[j : j + n])
            i += 1
        while len(out) < n and i < len(chunks):
            out.extend(chunks[i][: n - len(out)])
            i += 1
        return out

    def backward(self, key: bytes | None, n: int) -> list[bytes]:
        """Up to ``n`` keys below ``key`` (below nothing if None), descending."""
        chunks = self._chunks
        if not chunks:
            return []
        i = len(chunks) if key is None else bisect.bisect_left(self._maxes, key)
        if key is None or i == len(chunks):
            i = len(chunks) - 1
            j = len(chunks[i])
        else:
            j = bisect.bisect_left(chunks[i], key)
        out: list[bytes] = []
        while i >= 0 and len(out) < n:
            chunk = chunks[i]
            out.extend(reversed(chunk[max(0, j - (n - len(out))) : j]))
            i -= 1
            j = len(chunks[i]) if i >= 0 else 0
        return out


class Committed:
    """The committed records, plus what open readers need to keep seeing their own version.

    ``version`` counts publications. ``history[key]`` lists ``(version, previous value)`` for each
    publication that changed ``key`` while a reader was pinned, oldest first; a reader pinned at
    version ``p`` sees the previous value of the first entry newer than ``p``, else the current
    value. Guarded by the store's state lock.
    """

    __slots__ = ("values", "keys", "nbytes", "version", "history", "history_keys", "pins")

    def __init__(self, values: dict[bytes, bytes]) -> None:
        self.values = values
        self.keys = SortedKeys(sorted(values))
        self.nbytes = sum(len(k) + len(v) for k, v in values.items())
        self.version = 0
        self.history: dict[bytes, list[tuple[int, bytes | None]]] = {}
        self.history_keys = SortedKeys()
        self.pins: dict[int, int] = {}

    def publish(self, changes: dict[bytes, bytes | None]) -> None:
        version = self.version + 1
        keep_history = bool(self.pins)  # every pinned reader is older than ``version``
        values, keys = self.values, self.keys
        for key, value in changes.items():
            old = values.get(key)
            if old == value:
                continue
            if keep_history:
                entries = self.history.get(key)
                if entries is None:
                    self.history[key] = entries = []
                    self.history_keys.add(key)
                entries.append((version, old))
            if value is None:
                del values[key]
                keys.remove(key)
                self.nbytes -= len(key) + len(old)  # type: ignore[arg-type]
            else:
                if old is None:
                    keys.add(key)
                    self.nbytes += len(key) + len(value)
                else:
                    self.nbytes += len(value) - len(old)
                values[key] = value
        self.version = version

    def value_at(self, key: bytes, version: int) -> bytes | None:
        if version != self.version:
            for replaced_at, previous in self.history.get(key, ()):
                if replaced_at > version:
                    return previous
        return self.values.get(key)

    def pin(self) -> int:
        self.pins[self.version] = self.pins.get(self.version, 0) + 1
        return self.version

    def unpin(self, version: int) -> None:
        left = self.pins[version] - 1
        if left:
            self.pins[version] = left
            return
        del self.pins[version]
        if not self.pins:
            self.history, self.history_keys = {}, SortedKeys()
            return
        oldest = min(self.pins)
        if version < oldest:
            # Entries at or below the oldest pinned version can no longer be anyone's answer.
            history = {}
            for key, entries in self.history.items():
                kept = [e for e in entries if e[0] > oldest]
                if kept:
                    history[key] = kept
            self.history, self.history_keys = history, SortedKeys(sorted(history))

    def chunk(
        self,
        version: int,
        lo: bytes,
        hi: bytes | None,
        after: bytes | None,
        reverse: bool,
        size: int,
    ) -> tuple[list[tuple[bytes, bytes]], bytes | None, bool]:
        """Up to ``size`` keys of [lo, hi) past ``after``, as of ``version``.

        Returns (pairs, last key examined, exhausted). Scans go chunk by chunk, re-finding their
        place by key, so that a publication between two chunks cannot make them skip or repeat.
        """
        sources = [self.keys]
        if version != self.version and self.history_keys:
            sources.append(self.history_keys)  # keys deleted since ``version`` live only here
        picked: list[list[bytes]] = []
        for keys in sources:
            if not reverse:
                if after is None:
                    picked.append(keys.forward(lo, True, size))
                else:
                    picked.append(keys.forward(after, False, size))
            else:
                picked.append(keys.backward(hi if after is None else after, size))
        if len(picked) == 1:
            cand = picked[0]
        else:
            cand = sorted(set(picked[0]).union(picked[1]), reverse=reverse)[:size]
        exhausted = len(cand) < size
        if not reverse and hi is not None and cand and cand[-1] >= hi:
            cand = cand[: bisect.bisect_left(cand, hi)]
            exhausted = True
        elif reverse and cand and cand[-1] < lo:
            cand = [k for k in cand if k >= lo]
            exhausted = True
        pairs = []
        for key in cand:
            value = self.value_at(key, version)
            if value is not None:
                pairs.append((key, value))
        return pairs, (cand[-1] if cand else None), exhausted or not cand
