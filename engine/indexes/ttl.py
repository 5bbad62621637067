"""TTL keys (idempotency): a space of keys that are "seen" for a while, its expiry index, and
the thread that sweeps expired keys."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable

from engine.indexes.layout import NS_TTL, TTL_EXPIRY, ttl_expiry_key
from engine.indexes.writes import transact
from engine.interface import Store, Transaction
from engine.keys import END, pack, unpack

log = logging.getLogger(__name__)


class TtlSpace:
    """Keys that are "seen" for a while (idempotency): reserve() says whether a key is new.

    A key is live until its expiry; an expired key counts as new again (and is refreshed); a
    TTL of 0 never expires. Expired keys are found through the expiry index and purged by
    :meth:`sweep` in short batches, not kept forever.
    """

    #: Keys longer than this are identified by their sha256 (and kept whole in the value).
    KEY_LIMIT = 400

    def __init__(self, name: str) -> None:
        self.name = name
        self.prefix = pack((NS_TTL, name))
        self.expiry_prefix = self.prefix + pack((TTL_EXPIRY,))

    def _suffix(self, key: str | bytes) -> bytes:
        if not isinstance(key, (str, bytes)):
            raise TypeError(f"TTL keys are str or bytes, not {type(key).__name__}")
        short = pack(("k", key))
        if len(short) <= self.KEY_LIMIT:
            return short
        # The type goes into the digest so that a str key and its UTF-8 bytes stay distinct, as
        # they are when short. Two long keys collide only if sha256 does: accepted here, unlike
        # unique indexes, since a collision costs one message taken for a duplicate.
        raw = b"s:" + key.encode("utf-8", "surrogatepass") if isinstance(key, str) else b"b:" + key
        return pack(("h", hashlib.sha256(raw).digest()))

    @staticmethod
    def _now_us(now: float | None) -> int:
        return int((time.time() if now is None else now) * 1_000_000)

    def _expiry_key(self, expires_us: int, suffix: bytes) -> bytes:
        return ttl_expiry_key(self.prefix, expires_us, suffix)

    def reserve(
        self, txn: Transaction, key: str | bytes, ttl_seconds: float, now: float | None = None
    ) -> bool:
        """True if ``key`` is first seen (new, or expired and now refreshed); False if live."""
        if ttl_seconds < 0:
            raise ValueError("ttl_seconds must be >= 0 (0: never expires)")
        suffix = self._suffix(key)
        main = self.prefix + suffix
        now_us = self._now_us(now)
        expires_us = now_us + round(ttl_seconds * 1_000_000) if ttl_seconds else 0
        value = pack((expires_us, key))
        if not txn.put(main, value, overwrite=False):
            old_expires = unpack(txn.get(main) or pack((0,)))[0]
            if old_expires == 0 or now_us < old_expires:  # type: ignore[operator]
                return False
            txn.delete(self._expiry_key(old_expires, suffix))  # type: ignore[arg-type]
            txn.put(main, value)
        if expires_us:
            txn.put(self._expiry_key(expires_us, suffix), b"")
        return True

    def expires_at(self, txn: Transaction, key: str | bytes) -> float | None:
        """Expiry time in seconds (0.0: never), or None if the key is not held."""
        raw = txn.get(self.prefix + self._suffix(key))
        return None if raw is None else unpack(raw)[0] / 1_000_000  # type: ignore[operator]

    def release(self, txn: Transaction, key: str | bytes) -> bool:
        suffix = self._suffix(key)
        raw = txn.get(self.prefix + suffix)
        if raw is None:
            return False
        expires = unpack(raw)[0]
        if expires:
            txn.delete(self._expiry_key(expires, suffix))  # type: ignore[arg-type]
        return txn.delete(self.prefix + suffix)

    def sweep(self, store: Store, *, batch_size: int = 256, now: float | None = None) -> int:
        """Delete keys expired at ``now``; each batch is its own short write transaction, so
        writers are never held up for long. Returns how many keys were purged."""
        now_us = self._now_us(now)
        hi = self.expiry_prefix + pack((now_us,)) + END  # expired: expires_us <= now_us
        purged = 0
        skip = len(self.expiry_prefix)

        def sweep_batch(txn: Transaction) -> tuple[int, int]:
            batch = [k for k, _ in txn.scan(self.expiry_prefix, hi, limit=batch_size)]
            deleted = 0
            for k in batch:
                expires, *rest = unpack(k[skip:])
                main = self.prefix + pack(rest)
                raw = txn.get(main)
                # The expiry entry may be stale only if the key was refreshed or released
                # without it; never delete a key whose current expiry is another one.
                if raw is not None and unpack(raw)[0] == expires:
                    txn.delete(main)
                    deleted += 1
                txn.delete(k)
            return len(batch), deleted

        while True:
            # transact: on postgresql a request refreshing one of these keys may conflict.
            seen, deleted = transact(store, sweep_batch)
            purged += deleted
            if seen < batch_size:
                return purged


class TtlSweeper:
    """A daemon thread sweeping TTL spaces every ``interval`` seconds (clock injectable)."""

    def __init__(
        self,
        store: Store,
        spaces: Iterable[TtlSpace],
        interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        *,
        batch_size: int = 256,
    ) -> None:
        self.store = store
        self.spaces = list(spaces)
        self.interval = interval
        self.clock = clock
        self.batch_size = batch_size
        self.purged = 0
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        n = 0
        for space in self.spaces:
            n += space.sweep(self.store, batch_size=self.batch_size, now=self.clock())
        self.purged += n
        self.runs += 1
        return n

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a transient store failure must not end the sweeper
                log.exception("TTL sweep failed; retrying in %.1f s", self.interval)
            self._stop.wait(self.interval)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the sweeper is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ttl-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
