"""The engine contract: one suite, run on every backend (lmdb, file, sqlite, postgresql).

Each test gets a fresh store of the backend it is parametrised with (see tests/conftest.py).
Racing write transactions go through ``engine.indexes.transact``: on postgresql writers run in
parallel and the loser of a conflict fails with WriteConflictError (tests/engine/
test_postgres_writers.py) and is run again; elsewhere writers take turns and it runs once.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest

from engine import MAX_KEY_SIZE, Store, Transaction, errors, open_store
from engine.indexes import transact

Factory = Callable[..., Store]


def _fill(store: Store, pairs: dict[bytes, bytes]) -> None:
    with store.begin(write=True) as txn:
        for k, v in pairs.items():
            txn.put(k, v)


def _all(store: Store) -> list[tuple[bytes, bytes]]:
    with store.begin() as txn:
        return list(txn.scan())


# -- basic operations --------------------------------------------------------------------------


def test_get_put_delete_round_trip(store: Store) -> None:
    with store.begin(write=True) as txn:
        assert txn.get(b"k") is None
        assert txn.put(b"k", b"v1") is True
        assert txn.get(b"k") == b"v1"  # a write transaction reads its own writes
        assert txn.put(b"k", b"v2") is True
    with store.begin() as txn:
        assert txn.get(b"k") == b"v2"
    with store.begin(write=True) as txn:
        assert txn.delete(b"k") is True
        assert txn.delete(b"k") is False
        assert txn.get(b"k") is None
    with store.begin() as txn:
        assert txn.get(b"k") is None
        assert txn.get(b"never") is None


def test_insert_if_absent(store: Store) -> None:
    with store.begin(write=True) as txn:
        assert txn.put(b"u", b"first", overwrite=False) is True
        assert txn.put(b"u", b"second", overwrite=False) is False
        assert txn.get(b"u") == b"first"
    with store.begin(write=True) as txn:
        assert txn.put(b"u", b"third", overwrite=False) is False
        txn.delete(b"u")
        assert txn.put(b"u", b"fourth", overwrite=False) is True
    with store.begin() as txn:
        assert txn.get(b"u") == b"fourth"


def test_empty_and_binary_keys_and_values(store: Store) -> None:
    keys = [b"", b"\x00", b"\x00\x00", b"\xff", b"\xff" * MAX_KEY_SIZE, bytes(range(256))]
    with store.begin(write=True) as txn:
        for i, k in enumerate(keys):
            txn.put(k, bytes([i]) + b"\x00\xff" + k)
        txn.put(b"empty-value", b"")
    with store.begin() as txn:
        for i, k in enumerate(keys):
            assert txn.get(k) == bytes([i]) + b"\x00\xff" + k
        assert txn.get(b"empty-value") == b""
        assert [k for k, _ in txn.scan()] == sorted([*keys, b"empty-value"])


def test_large_values(store_factory: Factory, make_store: object, backend: str) -> None:
    loc = make_store.location(backend)  # type: ignore[attr-defined]
    store = make_store.open(backend, loc)  # type: ignore[attr-defined]
    rng = random.Random(7)
    big = {f"big{i}".encode(): rng.randbytes(1 << 20) for i in range(3)}
    for k, v in big.items():
        with store.begin(write=True) as txn:
            txn.put(k, v)
    with store.begin() as txn:
        for k, v in big.items():
            assert txn.get(k) == v
    store.close()
    reopened = make_store.open(backend, loc)  # type: ignore[attr-defined]
    with reopened.begin() as txn:
        assert dict(txn.scan()) == big


# -- ordering and scans --------------------------------------------------------------------------


def test_bytewise_order_forward_and_reverse(store: Store) -> None:
    rng = random.Random(42)
    keys = {rng.randbytes(rng.randint(0, 12)) for _ in range(300)}
    keys |= {b"a", b"a\x00", b"a\xff", b"b", b"\x7f", b"\x80"}
    _fill(store, {k: k[::-1] + b"!" for k in keys})
    expected = sorted(keys)
    with store.begin() as txn:
        assert [k for k, _ in txn.scan()] == expected
        assert [k for k, _ in txn.scan(reverse=True)] == expected[::-1]
        assert all(v == k[::-1] + b"!" for k, v in txn.scan())


def test_ranges_prefixes_and_limits(store: Store) -> None:
    keys = [b"a", b"ab", b"abc", b"abd", b"ac", b"b", b"b\x00", b"ba", b"c", b"\xff", b"\xff\xff"]
    _fill(store, {k: b"v" + k for k in keys})
    with store.begin() as txn:

        def ks(**kw: object) -> list[bytes]:
            return [k for k, _ in txn.scan(**kw)]  # type: ignore[arg-type]

        # [start, end): start inclusive, end exclusive, forward and reverse
        assert ks(start=b"ab", end=b"b") == [b"ab", b"abc", b"abd", b"ac"]
        assert ks(start=b"ab", end=b"b", reverse=True) == [b"ac", b"abd", b"abc", b"ab"]
        assert ks(start=b"aa", end=b"ab") == []
        assert ks(start=b"b", end=b"b") == []
        assert ks(start=b"c", end=b"a") == []
        assert ks(start=b"b") == [b"b", b"b\x00", b"ba", b"c", b"\xff", b"\xff\xff"]
        assert ks(end=b"ab") == [b"a"]
        assert ks(end=b"ab", reverse=True) == [b"a"]
        assert ks(start=b"bb", reverse=True) == [b"\xff\xff", b"\xff", b"c"]
        # a reverse scan whose end lies between keys, and past every key
        assert ks(end=b"abcz", reverse=True, limit=2) == [b"abc", b"ab"]
        assert ks(end=b"\xff\xff\xff", reverse=True, limit=1) == [b"\xff\xff"]
        # prefixes, including one of 0xff bytes (no upper bound)
        assert ks(prefix=b"ab") == [b"ab", b"abc", b"abd"]
        assert ks(prefix=b"ab", reverse=True) == [b"abd", b"abc", b"ab"]
        assert ks(prefix=b"b") == [b"b", b"b\x00", b"ba"]
        assert ks(prefix=b"\xff") == [b"\xff", b"\xff\xff"]
        assert ks(prefix=b"\xff", reverse=True) == [b"\xff\xff", b"\xff"]
        assert ks(prefix=b"zz") == []
        assert ks(prefix=b"") == keys
        # prefix combined with a start bound (cursor-style continuation)
        assert ks(prefix=b"ab", start=b"abc\x00") == [b"abd"]
        assert ks(prefix=b"ab", end=b"abd", reverse=True) == [b"abc", b"ab"]
        # limits
        assert ks(limit=3) == [b"a", b"ab", b"abc"]
        assert ks(limit=3, reverse=True) == [b"\xff\xff", b"\xff", b"c"]
        assert ks(limit=0) == []
        assert ks(prefix=b"a", limit=100) == [b"a", b"ab", b"abc", b"abd", b"ac"]


def test_write_transaction_scans_merge_its_own_changes(store: Store) -> None:
    _fill(store, {b"k1": b"1", b"k3": b"3", b"k5": b"5"})
    with store.begin(write=True) as txn:
        txn.put(b"k2", b"2")
        txn.put(b"k3", b"33")
        txn.delete(b"k5")
        txn.put(b"k6", b"6")
        assert list(txn.scan(prefix=b"k")) == [
            (b"k1", b"1"), (b"k2", b"2"), (b"k3", b"33"), (b"k6", b"6")
        ]
        assert [k for k, _ in txn.scan(prefix=b"k", reverse=True)] == [b"k6", b"k3", b"k2", b"k1"]
        assert [k for k, _ in txn.scan(start=b"k2", end=b"k6", limit=2)] == [b"k2", b"k3"]
        txn.abort()
    assert _all(store) == [(b"k1", b"1"), (b"k3", b"3"), (b"k5", b"5")]


# -- transactions --------------------------------------------------------------------------------


def test_exception_in_write_transaction_leaves_nothing(store: Store) -> None:
    _fill(store, {b"keep": b"1"})
    with pytest.raises(RuntimeError):
        with store.begin(write=True) as txn:
            txn.put(b"new", b"x")
            txn.put(b"keep", b"changed")
            txn.delete(b"keep")
            raise RuntimeError("boom")
    assert _all(store) == [(b"keep", b"1")]
    # the store keeps working after an aborted transaction
    _fill(store, {b"after": b"2"})
    assert _all(store) == [(b"after", b"2"), (b"keep", b"1")]


def test_explicit_abort_and_commit(store: Store) -> None:
    txn = store.begin(write=True)
    txn.put(b"a", b"1")
    txn.abort()
    assert txn.closed
    txn = store.begin(write=True)
    txn.put(b"b", b"2")
    txn.commit()
    assert _all(store) == [(b"b", b"2")]
    with pytest.raises(errors.TransactionClosedError):
        txn.put(b"c", b"3")
    with pytest.raises(errors.TransactionClosedError):
        txn.get(b"b")


def test_reader_does_not_see_uncommitted_write(store: Store) -> None:
    _fill(store, {b"k": b"old"})
    writing = threading.Event()
    release = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            with store.begin(write=True) as txn:
                txn.put(b"k", b"new")
                txn.put(b"other", b"x")
                writing.set()
                assert release.wait(20)
        except BaseException as exc:  # reported below
            failures.append(exc)
            writing.set()

    t = threading.Thread(target=writer)
    t.start()
    assert writing.wait(20)
    with store.begin() as reader:
        assert reader.get(b"k") == b"old"
        assert reader.get(b"other") is None
        assert list(reader.scan()) == [(b"k", b"old")]
    release.set()
    t.join(20)
    assert not failures
    with store.begin() as reader:
        assert reader.get(b"k") == b"new"


def test_reader_keeps_its_snapshot_while_a_writer_commits(store: Store) -> None:
    _fill(store, {b"a": b"1", b"b": b"1"})
    reader = store.begin()
    assert reader.get(b"a") == b"1"  # the snapshot is taken by now on every backend

    def writer() -> None:
        with store.begin(write=True) as txn:
            txn.put(b"a", b"2")
            txn.put(b"b", b"2")

    t = threading.Thread(target=writer)
    t.start()
    t.join(0.5)  # a backend may make the writer wait for the reader; both are correct
    assert reader.get(b"b") == b"1"
    assert list(reader.scan()) == [(b"a", b"1"), (b"b", b"1")]
    reader.abort()
    t.join(20)
    assert not t.is_alive()
    assert _all(store) == [(b"a", b"2"), (b"b", b"2")]


def test_reopen_keeps_every_committed_write(make_store: object, backend: str) -> None:
    loc = make_store.location(backend)  # type: ignore[attr-defined]
    store = make_store.open(backend, loc)  # type: ignore[attr-defined]
    expected = {}
    for i in range(50):
        with store.begin(write=True) as txn:
            k = f"key{i:03d}".encode()
            txn.put(k, str(i).encode())
            expected[k] = str(i).encode()
            if i % 5 == 0 and i:
                prev = f"key{i - 1:03d}".encode()
                txn.delete(prev)
                expected.pop(prev)
    meta = store.metadata
    store.close()
    store = make_store.open(backend, loc)  # type: ignore[attr-defined]
    assert dict(_all(store)) == expected
    assert store.metadata == meta
    assert meta["backend"] == backend and meta["format_version"] >= 1
    store.close()


# -- concurrency -----------------------------------------------------------------------------------


def _race(n: int, fn: Callable[[int], object]) -> list[object]:
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as exc:  # collected and re-raised by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return results


def test_insert_if_absent_race_has_exactly_one_winner(store: Store) -> None:
    for round_ in range(3):
        key = f"claim{round_}".encode()

        def claim(i: int, key: bytes = key) -> bool:
            # transact: where writers run in parallel (postgresql) a racing claim may fail with
            # WriteConflictError, to be run again; it then sees the winner's key.
            return transact(store, lambda txn: txn.put(key, str(i).encode(), overwrite=False))

        results = _race(16, claim)
        assert not [r for r in results if isinstance(r, BaseException)], results
        winners = [i for i, r in enumerate(results) if r is True]
        assert len(winners) == 1
        with store.begin() as txn:
            assert txn.get(key) == str(winners[0]).encode()


def test_read_modify_write_from_many_threads_loses_nothing(store: Store) -> None:
    def bump(i: int) -> None:
        def once(txn: Transaction) -> None:
            n = int(txn.get(b"counter") or b"0")
            txn.put(b"counter", str(n + 1).encode())
            txn.put(f"t{i}/{n}".encode(), b"x")

        for _ in range(25):
            transact(store, once)  # as above: a conflict's loser runs again

    results = _race(16, bump)
    assert not [r for r in results if isinstance(r, BaseException)], results
    with store.begin() as txn:
        assert txn.get(b"counter") == b"400"
        assert len(list(txn.scan(prefix=b"t"))) == 400


def test_concurrent_readers_while_writing(store: Store) -> None:
    _fill(store, {f"r{i:03d}".encode(): b"0" for i in range(100)})
    stop = threading.Event()

    def write(_: int) -> None:
        for gen in range(1, 30):
            with store.begin(write=True) as txn:
                for i in range(100):
                    txn.put(f"r{i:03d}".encode(), str(gen).encode())
        stop.set()

    def read(_: int) -> int:
        seen = 0
        while not stop.is_set() or seen == 0:
            with store.begin() as txn:
                values = {v for _, v in txn.scan(prefix=b"r")}
            # every transaction is atomic: a reader sees one generation, never a mix
            assert len(values) == 1, values
            seen += 1
        return seen

    results = _race(4, lambda i: write(i) if i == 0 else read(i))
    assert not [r for r in results if isinstance(r, BaseException)], results


def test_nested_write_transaction_in_one_thread_is_refused(store: Store) -> None:
    with store.begin(write=True) as txn:
        txn.put(b"a", b"1")
        with pytest.raises(errors.EngineError):
            store.begin(write=True)
    assert _all(store) == [(b"a", b"1")]


# -- errors --------------------------------------------------------------------------------------


def test_invalid_keys_and_values(store: Store) -> None:
    with store.begin(write=True) as txn:
        with pytest.raises(errors.InvalidKeyError):
            txn.put(b"x" * (MAX_KEY_SIZE + 1), b"v")
        with pytest.raises(errors.InvalidKeyError):
            txn.put("text", b"v")  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidKeyError):
            txn.put(b"k", "text")  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidKeyError):
            txn.get(None)  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidKeyError):
            list(txn.scan(limit=-1))
        txn.put(b"ok", b"v")  # the transaction is still usable after refused calls
    assert _all(store) == [(b"ok", b"v")]


def test_writes_in_a_read_transaction_are_refused(store: Store) -> None:
    with store.begin() as txn:
        with pytest.raises(errors.ReadOnlyError):
            txn.put(b"a", b"1")
        with pytest.raises(errors.ReadOnlyError):
            txn.delete(b"a")
    assert _all(store) == []


def test_closed_store_refuses_work(store_factory: Factory) -> None:
    store = store_factory()
    _fill(store, {b"a": b"1"})
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(errors.StoreClosedError):
        store.begin()
    with pytest.raises(errors.StoreClosedError):
        store.begin(write=True)


def test_readonly_open_reads_and_refuses_writes(make_store: object, backend: str) -> None:
    loc = make_store.location(backend)  # type: ignore[attr-defined]
    store = make_store.open(backend, loc)  # type: ignore[attr-defined]
    _fill(store, {b"a": b"1"})
    reader = make_store.open(backend, loc, readonly=True) if backend != "lmdb" else None  # type: ignore[attr-defined]
    if reader is None:
        # LMDB forbids a second environment on one path in one process; read-only opens come
        # from other processes (the dump tool), which tests/engine/test_lmdb_backend.py covers.
        store.close()
        reader = make_store.open(backend, loc, readonly=True)  # type: ignore[attr-defined]
    with reader.begin() as txn:
        assert txn.get(b"a") == b"1"
    with pytest.raises(errors.ReadOnlyError):
        reader.begin(write=True)


def test_missing_store_is_not_created_when_asked(make_store: object, backend: str) -> None:
    loc = make_store.location(backend)  # type: ignore[attr-defined]
    with pytest.raises(errors.StoreNotFoundError):
        open_store(backend, **loc, create=False)
    with pytest.raises(errors.StoreNotFoundError):
        open_store(backend, **loc, readonly=True)


# -- backup --------------------------------------------------------------------------------------


def test_backup_copies_the_committed_state_and_opens_as_a_store(
    make_store: object, backend: str, tmp_path: object
) -> None:
    store = make_store.open(backend)  # type: ignore[attr-defined]
    pairs = {b"": b"empty key", b"a": b"1", b"b" * MAX_KEY_SIZE: bytes(range(256))}
    _fill(store, pairs)
    dest = tmp_path / "backup"  # type: ignore[operator]
    if backend == "postgresql":
        with pytest.raises(errors.UnsupportedOperationError):
            store.backup(str(dest / backend))
        return
    store.backup(str(dest / backend))
    _fill(store, {b"after": b"the backup"})  # the store stays in use, writable
    copy = make_store.open(backend, {"data_dir": str(dest)}, readonly=True)  # type: ignore[attr-defined]
    assert copy.metadata["backend"] == backend
    with copy.begin() as txn:
        assert list(txn.scan()) == sorted(pairs.items())
    with store.begin() as txn:
        assert txn.get(b"after") == b"the backup"


def test_backup_refuses_a_non_empty_destination_and_a_closed_store(
    store_factory: Factory, backend: str, tmp_path: object
) -> None:
    if backend == "postgresql":
        pytest.skip("postgresql has no backup of its own (pg_dump)")
    store = store_factory()
    _fill(store, {b"a": b"1"})
    occupied = tmp_path / "occupied"  # type: ignore[operator]
    occupied.mkdir()
    (occupied / "something").write_bytes(b"mine")
    with pytest.raises(errors.ConfigurationError):
        store.backup(str(occupied))
    assert (occupied / "something").read_bytes() == b"mine"
    assert sorted(p.name for p in occupied.iterdir()) == ["something"]
    store.close()
    with pytest.raises(errors.StoreClosedError):
        store.backup(str(tmp_path / "after-close"))  # type: ignore[operator]


def test_unknown_provider_lists_the_valid_ones() -> None:
    with pytest.raises(errors.ConfigurationError) as info:
        open_store("mongodb")
    for name in ("lmdb", "file", "sqlite", "postgresql"):
        assert name in str(info.value)
