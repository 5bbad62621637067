"""Engine workloads, in process: the engine's backends against the raw libraries.

Raw baselines do what an application using the library directly would do, with the same
durability: py-lmdb with ``sync`` and ``metasync`` (one transaction per operation), sqlite3 in WAL
with ``synchronous=FULL`` (one ``BEGIN IMMEDIATE`` ... ``COMMIT`` per write, one transaction per
read). The "slow flash" variants add 5 ms before every durable flush on both sides: the engine's
``BatchingStore.flush_delay`` before a batch's commit, and a sleep before each raw commit (inside
the write transaction, where a slow fsync would be).
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import lmdb

from engine import Store, open_store
from engine.batching import BatchingStore
from tools.bench.core import (
    Comparison,
    Config,
    Sample,
    Side,
    Target,
    Tmp,
    iter_chunks,
    key_of,
    threaded_ops,
    timed_loop,
    timed_ops,
    value_of,
)

RAW_MAP_SIZE = 4 << 30


# -- opening both sides ----------------------------------------------------------------------
def engine_store(tmp: Tmp, provider: str, **options: Any) -> Store:
    return open_store(provider, data_dir=tmp.new(provider), **options)


def raw_lmdb(tmp: Tmp) -> lmdb.Environment:
    return lmdb.open(tmp.new("raw-lmdb"), map_size=RAW_MAP_SIZE, sync=True, metasync=True,
                     max_readers=510)


class RawSqlite:
    """sqlite3 with the engine's pragmas (WAL, synchronous=FULL), one connection per thread."""

    SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) " \
             "WITHOUT ROWID"

    def __init__(self, tmp: Tmp) -> None:
        self.filename = os.path.join(tmp.new("raw-sqlite"), "raw.sqlite3")
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.conn().execute(self.SCHEMA)

    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.filename, timeout=60, isolation_level=None,
                                check_same_thread=False)
            c.execute("PRAGMA busy_timeout = 60000")
            c.execute("PRAGMA journal_mode = WAL")
            c.execute("PRAGMA synchronous = FULL")
            self._local.conn = c
            with self._lock:
                self._all.append(c)
        return c

    def put(self, key: bytes, value: bytes, delay: float = 0.0) -> None:
        c = self.conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))
            if delay:
                time.sleep(delay)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def get(self, key: bytes) -> bytes | None:
        # One read transaction per get, as the engine's begin() / get() / end.
        c = self.conn()
        c.execute("BEGIN")
        try:
            row = c.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        finally:
            c.execute("COMMIT")
        return None if row is None else row[0]

    def fill(self, n: int, size: int) -> None:
        c = self.conn()
        for chunk in iter_chunks(n, 20_000):
            c.execute("BEGIN IMMEDIATE")
            c.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                          ((key_of(i), value_of(size, i)) for i in chunk))
            c.execute("COMMIT")

    def close(self) -> None:
        for c in self._all:
            c.close()


def fill_store(store: Store, n: int, size: int, batch: int = 20_000) -> None:
    for chunk in iter_chunks(n, batch):
        with store.begin(write=True) as txn:
            for i in chunk:
                txn.put(key_of(i), value_of(size, i))


def fill_raw_lmdb(env: lmdb.Environment, n: int, size: int) -> None:
    for chunk in iter_chunks(n, 20_000):
        with env.begin(write=True) as txn:
            for i in chunk:
                txn.put(key_of(i), value_of(size, i))


def _read_keys(n: int) -> list[bytes]:
    # A fixed pseudo-random order, the same on both sides: no side gets a cache-friendly walk.
    step = 7919  # prime, coprime with any n we use unless n is its multiple
    return [key_of((i * step) % n) for i in range(n)]


# -- point reads -----------------------------------------------------------------------------
def point_read_sides(store: Store, keys: list[bytes], seconds: float) -> Side:
    n = len(keys)

    def op(i: int) -> None:
        with store.begin() as txn:
            if txn.get(keys[i % n]) is None:
                raise AssertionError("a filled key is missing")

    return lambda: timed_loop(op, seconds)


@contextmanager
def lmdb_point_read(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
    store = engine_store(tmp, "lmdb")
    env = raw_lmdb(tmp)
    try:
        fill_store(store, cfg.read_keys, cfg.value_size)
        fill_raw_lmdb(env, cfg.read_keys, cfg.value_size)
        keys = _read_keys(cfg.read_keys)
        n = len(keys)

        def raw_op(i: int) -> None:
            with env.begin() as txn:
                if txn.get(keys[i % n]) is None:
                    raise AssertionError("a filled key is missing")

        yield point_read_sides(store, keys, cfg.engine_seconds), \
            (lambda: timed_loop(raw_op, cfg.engine_seconds))
    finally:
        store.close()
        env.close()


@contextmanager
def sqlite_point_read(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
    store = engine_store(tmp, "sqlite")
    raw = RawSqlite(tmp)
    try:
        fill_store(store, cfg.read_keys, cfg.value_size)
        raw.fill(cfg.read_keys, cfg.value_size)
        keys = _read_keys(cfg.read_keys)
        n = len(keys)

        def raw_op(i: int) -> None:
            if raw.get(keys[i % n]) is None:
                raise AssertionError("a filled key is missing")

        yield point_read_sides(store, keys, cfg.engine_seconds), \
            (lambda: timed_loop(raw_op, cfg.engine_seconds))
    finally:
        store.close()
        raw.close()


# -- single-writer durable writes ------------------------------------------------------------
def _engine_writer(store: Store, size: int, seconds: float) -> Side:
    counter = itertools.count()

    def side() -> Sample:
        base = next(counter) * 10_000_000

        def op(i: int) -> None:
            with store.begin(write=True) as txn:
                txn.put(key_of(base + i), value_of(size, i))

        return timed_ops(op, seconds)

    return side


@contextmanager
def lmdb_single_writer(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
    store = engine_store(tmp, "lmdb")
    env = raw_lmdb(tmp)
    counter = itertools.count()
    try:
        def raw_side() -> Sample:
            base = next(counter) * 10_000_000

            def op(i: int) -> None:
                with env.begin(write=True) as txn:
                    txn.put(key_of(base + i), value_of(cfg.value_size, i))

            return timed_ops(op, cfg.engine_seconds)

        yield _engine_writer(store, cfg.value_size, cfg.engine_seconds), raw_side
    finally:
        store.close()
        env.close()


@contextmanager
def sqlite_single_writer(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
    store = engine_store(tmp, "sqlite")
    raw = RawSqlite(tmp)
    counter = itertools.count()
    try:
        def raw_side() -> Sample:
            base = next(counter) * 10_000_000
            return timed_ops(lambda i: raw.put(key_of(base + i), value_of(cfg.value_size, i)),
                             cfg.engine_seconds)

        yield _engine_writer(store, cfg.value_size, cfg.engine_seconds), raw_side
    finally:
        store.close()
        raw.close()


# -- group commit ----------------------------------------------------------------------------
def _engine_threads(store: Store, cfg: Config, threads: int, delay: float) -> Side:
    if isinstance(store, BatchingStore):
        store.flush_delay = delay
    counter = itertools.count()
    size = cfg.value_size

    def side() -> Sample:
        base = next(counter) * 100_000_000

        def op(t: int, i: int) -> None:
            with store.begin(write=True) as txn:
                txn.put(key_of(base + t * 1_000_000 + i), value_of(size, i))

        return threaded_ops(op, threads, cfg.engine_seconds)

    return side


def group_commit(provider: str, threads: int, slow: bool) -> Callable[[Config, Tmp], Any]:
    @contextmanager
    def setup(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
        delay = cfg.slow_flush_s if slow else 0.0
        size = cfg.value_size
        counter = itertools.count()
        with ExitStack() as stack:
            store = engine_store(tmp, provider)
            stack.callback(store.close)
            subject = _engine_threads(store, cfg, threads, delay)
            if provider == "lmdb":
                env = raw_lmdb(tmp)
                stack.callback(env.close)

                def raw_op(t: int, i: int, base: int) -> None:
                    with env.begin(write=True) as txn:
                        txn.put(key_of(base + t * 1_000_000 + i), value_of(size, i))
                        if delay:
                            time.sleep(delay)

            elif provider == "sqlite":
                raw = RawSqlite(tmp)
                stack.callback(raw.close)

                def raw_op(t: int, i: int, base: int) -> None:
                    raw.put(key_of(base + t * 1_000_000 + i), value_of(size, i), delay)

            else:  # file: compared with the lmdb backend, both through the engine
                other = engine_store(tmp, "lmdb")
                stack.callback(other.close)
                yield subject, _engine_threads(other, cfg, threads, delay)
                return

            def baseline() -> Sample:
                base = next(counter) * 100_000_000
                return threaded_ops(lambda t, i: raw_op(t, i, base), threads, cfg.engine_seconds)

            yield subject, baseline

    return setup


# -- file backend: the cost of a write against the size of the store ------------------------
@contextmanager
def file_write_scale(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
    large = engine_store(tmp, "file")
    small = engine_store(tmp, "file")
    try:
        fill_store(large, cfg.file_large, cfg.value_size)
        fill_store(small, cfg.file_small, cfg.value_size)
        for store in (large, small):  # the fill's compaction runs in the background: let it end
            store.wait_for_compaction()  # type: ignore[attr-defined]
        # Overwrites of existing keys keep both stores at their size for the whole run.
        counter = itertools.count()

        def side(store: Store, n: int) -> Side:
            def run() -> Sample:
                base = next(counter) * 7

                def op(i: int) -> None:
                    with store.begin(write=True) as txn:
                        txn.put(key_of((base + i * 7919) % n), value_of(cfg.value_size, i))

                return timed_ops(op, cfg.engine_seconds)

            return run

        yield side(large, cfg.file_large), side(small, cfg.file_small)
    finally:
        large.close()
        small.close()


def comparisons(cfg: Config, tmp: Tmp) -> list[Comparison]:
    def bind(fn: Callable[[Config, Tmp], Any]) -> Callable[[], Any]:
        return lambda: fn(cfg, tmp)

    out = [
        Comparison("lmdb_point_read", "engine", "lmdb point read, one read txn per get",
                   "engine lmdb", "raw py-lmdb", bind(lmdb_point_read),
                   [Target("ops_per_s", ">=", 0.5)]),
        Comparison("lmdb_write_1", "engine", "lmdb durable write, one writer, one txn per write",
                   "engine lmdb", "raw py-lmdb (sync, metasync)", bind(lmdb_single_writer),
                   [Target("ops_per_s", ">=", 0.8)]),
    ]
    group_targets = {16: 3.0, 64: 5.0}
    for provider, base_label in (("lmdb", "raw py-lmdb, txn per write"),
                                 ("sqlite", "raw sqlite3, txn per write"),
                                 ("file", "engine lmdb backend")):
        for threads in cfg.thread_counts:
            for slow in (False, True):
                if provider == "file":
                    target = Target("ops_per_s", ">=", 0.5)
                elif slow:
                    target = None  # reported: the gain on slow flash has no fixed target
                else:
                    target = Target("ops_per_s", ">=", group_targets.get(threads, 3.0))
                suffix = "_slow" if slow else ""
                desc = (f"{provider} durable writes, {threads} threads, group commit"
                        + (f", +{cfg.slow_flush_s * 1000:g} ms per flush" if slow else ""))
                out.append(Comparison(
                    f"{provider}_group_{threads}{suffix}", "engine", desc, f"engine {provider}",
                    base_label + (" +delay" if slow else ""),
                    bind(group_commit(provider, threads, slow)),
                    [target] if target else [],
                ))
    out += [
        Comparison("sqlite_point_read", "engine", "sqlite point read, one read txn per get",
                   "engine sqlite", "raw sqlite3 (WAL)", bind(sqlite_point_read),
                   [Target("ops_per_s", ">=", 0.8)]),
        Comparison("sqlite_write_1", "engine", "sqlite durable write, one writer",
                   "engine sqlite", "raw sqlite3 (WAL, synchronous=FULL)",
                   bind(sqlite_single_writer), [Target("ops_per_s", ">=", 0.8)]),
        Comparison("file_write_scale", "engine",
                   f"file backend durable write with {cfg.file_large:,} records vs "
                   f"{cfg.file_small:,}",
                   f"file @ {cfg.file_large:,}", f"file @ {cfg.file_small:,}",
                   bind(file_write_scale), [Target("ops_per_s", ">=", 0.7)]),
    ]
    return out
