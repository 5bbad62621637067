"""Engine write throughput on PostgreSQL: concurrent writers, against raw psycopg.

Both sides run the same small read-modify-write transaction from 1, 8 and 32 threads: read one
key, write it back changed, commit. Each thread works on keys of its own (a slice of 1,000 of the
32,000 keys stored beforehand, one picked at random per transaction), so the transactions touch
disjoint keys. The subject is the engine (``transact`` over a ``PostgresStore``: SERIALIZABLE,
retried on a conflict); the baseline is psycopg 3 on its own table in its own database of the same
server, one connection per thread, READ COMMITTED, no lock of any kind: what an application would
get from the database directly, with none of the engine's guarantees. ``pg_write_scale`` compares
the engine with itself: 32 threads against one.

The server is the one named by ``AUTOBYTEUS_TEST_DATABASE_URL`` or, without it, a throwaway
cluster started like the tests' (``tests/pgcluster.py``: initdb into a temporary directory,
fsync on), once per run and stopped at exit.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from engine import Store, Transaction, open_store
from engine.indexes import transact
from tools.bench.core import Comparison, Config, Sample, Side, Target, Tmp, key_of, threaded_ops

THREAD_COUNTS = (1, 8, 32)
SLICE = 1_000  # keys per thread
KEYS = SLICE * max(THREAD_COUNTS)

_cluster: Any = None
_cluster_lock = threading.Lock()
_databases = iter(range(1, 1_000_000))


def _database_url(name: str) -> str:
    """A fresh database on the run's PostgreSQL server (started on first use)."""
    global _cluster
    with _cluster_lock:
        if _cluster is None:
            from tests.pgcluster import PgCluster  # the tests' throwaway cluster

            _cluster = PgCluster.from_env_or_start()
        return str(_cluster.create_database(f"bench_{name}_{next(_databases)}"))


def _value(n: int, size: int) -> bytes:
    return (b"%012d" % n).ljust(size, b".")


def _next_value(old: bytes | None, size: int) -> bytes:
    return _value(int(old[:12]) + 1 if old else 1, size)


def _pick(t: int) -> bytes:
    return key_of(t * SLICE + random.randrange(SLICE))


class _Raw:
    """psycopg 3 on a table of its own: one connection per thread, READ COMMITTED, no lock."""

    def __init__(self, url: str, size: int) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._size = size
        self._local = threading.local()
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        with psycopg.connect(self._url) as conn:
            conn.execute("CREATE TABLE raw_kv (key bytea PRIMARY KEY, value bytea NOT NULL)")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO raw_kv VALUES (%s, %s)",
                                [(key_of(i), _value(0, size)) for i in range(KEYS)])

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._psycopg.connect(self._url)
            with self._lock:
                self._conns.append(conn)
        return conn

    def rmw(self, t: int, i: int) -> None:
        conn = self._conn()
        key = _pick(t)
        with conn.transaction():
            row = conn.execute("SELECT value FROM raw_kv WHERE key = %s", (key,)).fetchone()
            conn.execute(
                "INSERT INTO raw_kv VALUES (%s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, _next_value(row[0] if row else None, self._size)),
            )

    def close(self) -> None:
        for conn in self._conns:
            conn.close()


def _engine_store(size: int) -> Store:
    # A pooled connection per thread, as the raw side has (see "Beyond one host" in README.md).
    store = open_store("postgresql", database_url=_database_url("engine"),
                       pool_size=max(THREAD_COUNTS), max_overflow=0)
    with store.begin(write=True) as txn:
        for i in range(KEYS):
            txn.put(key_of(i), _value(0, size))
    return store


def _engine_side(store: Store, threads: int, seconds: float, size: int,
                 retries: list[int]) -> Side:
    def op(t: int, i: int) -> None:
        key = _pick(t)
        runs = 0

        def rmw(txn: Transaction) -> None:
            nonlocal runs
            runs += 1
            txn.put(key, _next_value(txn.get(key), size))

        transact(store, rmw)
        if runs > 1:
            retries.append(runs - 1)

    def side() -> Sample:
        retries.clear()
        sample = threaded_ops(op, threads, seconds)
        sample.info["retries"] = sum(retries)
        return sample

    return side


def pg_writers(threads: int) -> Callable[[Config, Tmp], Any]:
    @contextmanager
    def setup(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
        with ExitStack() as stack:
            store = _engine_store(cfg.value_size)
            stack.callback(store.close)
            raw = _Raw(_database_url("raw"), cfg.value_size)
            stack.callback(raw.close)
            subject = _engine_side(store, threads, cfg.engine_seconds, cfg.value_size, [])

            def baseline() -> Sample:
                return threaded_ops(raw.rmw, threads, cfg.engine_seconds)

            yield subject, baseline

    return setup


@contextmanager
def pg_write_scale(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
    store = _engine_store(cfg.value_size)
    try:
        many = _engine_side(store, max(THREAD_COUNTS), cfg.engine_seconds, cfg.value_size, [])
        one = _engine_side(store, 1, cfg.engine_seconds, cfg.value_size, [])
        yield many, one
    finally:
        store.close()


def comparisons(cfg: Config, tmp: Tmp) -> list[Comparison]:
    def bind(fn: Callable[[Config, Tmp], Any]) -> Callable[[], Any]:
        return lambda: fn(cfg, tmp)

    out = []
    for threads in THREAD_COUNTS:
        out.append(Comparison(
            f"pg_write_{threads}", "engine",
            f"postgresql read-modify-write txns, {threads} thread(s), disjoint keys",
            "engine postgresql (SERIALIZABLE, transact)",
            "raw psycopg, own table, READ COMMITTED, no lock",
            bind(pg_writers(threads)),
            [Target("ops_per_s", ">=", 0.6)] if threads == max(THREAD_COUNTS) else [],
        ))
    out.append(Comparison(
        "pg_write_scale", "engine",
        f"postgresql engine writes: {max(THREAD_COUNTS)} threads against 1 (same store)",
        f"engine postgresql, {max(THREAD_COUNTS)} threads", "engine postgresql, 1 thread",
        bind(pg_write_scale), [Target("ops_per_s", ">=", 1.4)],
    ))
    return out
