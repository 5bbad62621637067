"""What only the lmdb backend promises: map growth, reader slots, a reader in another process."""

from __future__ import annotations

import gc
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import lmdb
import pytest

from engine import errors, open_store
from engine.backends.lmdb import LmdbStore

ROOT = Path(__file__).resolve().parents[2]


def test_durable_flags_by_default(tmp_path: Path) -> None:
    store = open_store("lmdb", data_dir=str(tmp_path))
    flags = store._env.flags()  # type: ignore[attr-defined]
    assert flags["sync"] and flags["metasync"]
    store.close()


def test_map_grows_instead_of_failing(tmp_path: Path) -> None:
    store = LmdbStore(str(tmp_path / "s"), map_size=256 * 1024)
    start = store.stats()["map_size"]
    reader = store.begin()  # an open reader must not make growth fail or deadlock
    reader.get(b"x")
    done = threading.Event()

    def close_reader_soon() -> None:
        done.wait(0.3)
        reader.abort()

    threading.Thread(target=close_reader_soon).start()
    value = os.urandom(64 * 1024)
    for i in range(200):
        with store.begin(write=True) as txn:
            txn.put(f"k{i:04d}".encode(), value)
    done.set()
    grown = store.stats()
    assert grown["map_size"] > start
    assert grown["records"] == 200
    with store.begin() as txn:
        assert all(v == value for _, v in txn.scan())
    store.close()


def test_map_growth_under_concurrent_writers_and_readers(tmp_path: Path) -> None:
    store = LmdbStore(str(tmp_path / "s"), map_size=128 * 1024)
    failures: list[BaseException] = []

    def write(t: int) -> None:
        try:
            for i in range(40):
                with store.begin(write=True) as txn:
                    txn.put(f"{t}/{i}".encode(), os.urandom(8 * 1024))
        except BaseException as exc:
            failures.append(exc)

    def read() -> None:
        try:
            for _ in range(300):
                with store.begin() as txn:
                    list(txn.scan(limit=5))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures
    assert store.stats()["records"] == 320
    store.close()


def test_a_forgotten_reader_does_not_stop_the_map_from_growing(tmp_path: Path) -> None:
    # The reader gate counts open read transactions; one that its caller drops without closing
    # must stop counting when it is freed, or every later growth would wait for it and fail.
    store = LmdbStore(str(tmp_path / "s"), map_size=256 * 1024)
    gate = store._gate
    assert gate.readers() == 0
    forgotten = store.begin()
    forgotten.get(b"x")
    kept = store.begin()
    assert gate.readers() == 2
    del forgotten
    gc.collect()
    assert gate.readers() == 1
    kept.abort()
    assert gate.readers() == 0
    kept.abort()  # closing twice is harmless and does not count out twice
    assert gate.readers() == 0
    start = store.stats()["map_size"]
    value = os.urandom(64 * 1024)
    for i in range(40):
        with store.begin(write=True) as txn:
            txn.put(f"k{i:04d}".encode(), value)
    assert store.stats()["map_size"] > start
    assert gate.readers() == 0
    store.close()


def test_an_open_reader_blocks_growth_until_it_closes(tmp_path: Path) -> None:
    store = LmdbStore(str(tmp_path / "s"), map_size=256 * 1024)
    reader = store.begin()
    resized = threading.Event()
    failures: list[BaseException] = []

    def grow() -> None:
        try:
            store._grow_map()
            resized.set()
        except BaseException as exc:
            failures.append(exc)

    t = threading.Thread(target=grow)
    t.start()
    assert not resized.wait(0.3)  # LMDB may not be resized while this process reads
    assert store._gate.resizing
    reader.abort()
    t.join(30)
    assert resized.is_set() and not failures
    with store.begin() as txn:  # readers work again after the resize
        assert txn.get(b"x") is None
    store.close()


def test_reader_errors_are_engine_errors(tmp_path: Path) -> None:
    store = open_store("lmdb", data_dir=str(tmp_path))
    with store.begin(write=True) as txn:
        txn.put(b"k" * 510, b"longest key")
        txn.put(b"", b"empty key")
    txn = store.begin()
    assert txn.get(b"k" * 510) == b"longest key"
    assert txn.get(b"") == b"empty key"
    assert txn.get(bytearray(b"")) == b"empty key"
    assert txn.get(memoryview(b"k" * 510)) == b"longest key"
    with pytest.raises(errors.InvalidKeyError):
        txn.get(b"k" * 511)
    with pytest.raises(errors.InvalidKeyError):
        txn.get("text")  # type: ignore[arg-type]
    assert not txn.closed
    txn.commit()
    assert txn.closed
    with pytest.raises(errors.TransactionClosedError):
        txn.get(b"")
    with pytest.raises(errors.TransactionClosedError):
        txn.scan()
    store.close()
    with pytest.raises(errors.StoreClosedError):
        store.begin()


def test_a_second_process_reads_while_this_one_writes(tmp_path: Path) -> None:
    store = open_store("lmdb", data_dir=str(tmp_path), map_size=128 * 1024)
    with store.begin(write=True) as txn:
        txn.put(b"before", b"1")
    writer_txn = store.begin(write=True)  # holds the writer mutex while the other process reads
    writer_txn.put(b"uncommitted", b"x")
    code = textwrap.dedent(
        f"""
        import json
        from engine import open_store
        s = open_store("lmdb", data_dir={str(tmp_path)!r}, readonly=True)
        with s.begin() as t:
            print(json.dumps([k.decode() for k, _ in t.scan()]))
        s.close()
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["before"]
    writer_txn.commit()
    # the writer grows the map past the size the other process first saw; it adapts
    for i in range(100):
        with store.begin(write=True) as txn:
            txn.put(f"grow{i}".encode(), os.urandom(16 * 1024))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == 102
    store.close()


@pytest.mark.parametrize("multiprocess", [False, True])
def test_several_writing_processes_lose_no_update(tmp_path: Path, multiprocess: bool) -> None:
    """Read-modify-write increments of one counter from 3 processes of 4 threads each: a batch
    reads a snapshot and is written at its flush, so without the writers' lock across processes
    two of them would read the same value and one increment would be lost."""
    processes, threads, increments = 3, 4, 60
    open_store("lmdb", data_dir=str(tmp_path)).close()
    code = textwrap.dedent(
        f"""
        import threading
        from engine import open_store
        s = open_store("lmdb", data_dir={str(tmp_path)!r}, multiprocess={multiprocess!r})
        def work():
            for _ in range({increments}):
                with s.begin(write=True) as t:
                    t.put(b"n", str(int(t.get(b"n") or b"0") + 1).encode())
        ts = [threading.Thread(target=work) for _ in range({threads})]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        s.close()
        """
    )
    children = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE,
                                 text=True) for _ in range(processes)]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    store = open_store("lmdb", data_dir=str(tmp_path))
    with store.begin() as txn:
        assert txn.get(b"n") == str(processes * threads * increments).encode()
    store.close()


def test_stale_reader_slots_are_cleared_at_open(tmp_path: Path) -> None:
    open_store("lmdb", data_dir=str(tmp_path)).close()
    path = str(tmp_path / "lmdb")
    # A process that keeps the environment open, so LMDB does not reset its reader table.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import lmdb,sys; e=lmdb.open({path!r}, max_dbs=2, readonly=True);"
         " print('up', flush=True);"
         " sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
        code = textwrap.dedent(
            f"""
            import os, signal
            from engine import open_store
            s = open_store("lmdb", data_dir={str(tmp_path)!r}, readonly=True)
            t = s.begin(); t.get(b"x")
            print(os.getpid(), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
            """
        )
        killed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
        assert killed.returncode == -9
        dead_pid = killed.stdout.strip()

        def reader_table() -> str:
            return subprocess.run(
                [sys.executable, "-c",
                 f"import lmdb; print(lmdb.open({path!r}, max_dbs=2, readonly=True).readers())"],
                capture_output=True, text=True, timeout=60,
            ).stdout

        assert dead_pid in reader_table()  # the dead reader still holds its slot
        store = open_store("lmdb", data_dir=str(tmp_path))
        assert store.stats()["readers"]["stale_cleared_at_open"] >= 1
        assert dead_pid not in reader_table()
        store.close()
    finally:
        holder.kill()
        holder.wait()


def test_store_of_another_backend_is_refused(tmp_path: Path) -> None:
    store = open_store("lmdb", data_dir=str(tmp_path))
    store.close()
    env = lmdb.open(str(tmp_path / "lmdb"), max_dbs=2)
    meta = env.open_db(b"meta")
    with env.begin(write=True, db=meta) as txn:
        record = json.loads(txn.get(b"store"))
        record["backend"] = "file"
        txn.put(b"store", json.dumps(record).encode())
    env.close()
    with pytest.raises(errors.IncompatibleStoreError):
        open_store("lmdb", data_dir=str(tmp_path))


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    open_store("lmdb", data_dir=str(tmp_path)).close()
    env = lmdb.open(str(tmp_path / "lmdb"), max_dbs=2)
    meta = env.open_db(b"meta")
    with env.begin(write=True, db=meta) as txn:
        record = json.loads(txn.get(b"store"))
        record["format_version"] = 99
        txn.put(b"store", json.dumps(record).encode())
    env.close()
    with pytest.raises(errors.IncompatibleStoreError, match="format version 99"):
        open_store("lmdb", data_dir=str(tmp_path))


def test_opening_one_path_twice_in_a_process_is_refused(tmp_path: Path) -> None:
    store = open_store("lmdb", data_dir=str(tmp_path))
    with pytest.raises(errors.StoreLockedError):
        open_store("lmdb", data_dir=str(tmp_path))
    store.close()
    open_store("lmdb", data_dir=str(tmp_path)).close()


class _HeldFlushes(LmdbStore):
    """Flushes wait for ``release`` and then fail with ``fail_with`` if it is set."""

    def __init__(self, path: str, **options: object) -> None:
        super().__init__(path, **options)  # type: ignore[arg-type]
        self.flushing = threading.Event()
        self.release = threading.Event()
        self.fail_with: BaseException | None = None
        self.flushes = 0

    def _batch_commit(self, handle: object) -> None:
        self.flushes += 1
        self.flushing.set()
        assert self.release.wait(30)
        if self.fail_with is not None:
            self._release_snapshot(handle)  # type: ignore[arg-type]
            raise self.fail_with
        super()._batch_commit(handle)  # type: ignore[arg-type]


def _commit_in_thread(
    store: LmdbStore, fn: object, name: str | None = None
) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        try:
            with store.begin(write=True) as txn:
                outcome.append(fn(txn))  # type: ignore[operator]
            outcome.append("committed")
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=run, name=name)
    t.start()
    return t, outcome


def test_group_commit_is_pipelined_writers_run_during_a_flush(tmp_path: Path) -> None:
    store = _HeldFlushes(str(tmp_path / "s"))
    first, first_out = _commit_in_thread(store, lambda txn: txn.put(b"a", b"1"))
    assert store.flushing.wait(10)
    # The first batch is being flushed, outside the writer mutex: a second writer runs its whole
    # transaction now and reads the first one's change, which is not durable yet.
    with store.begin() as reader:
        assert reader.get(b"a") is None  # readers see only what is durable
    second, second_out = _commit_in_thread(
        store, lambda txn: (txn.get(b"a"), txn.put(b"b", txn.get(b"a") + b"+1"),
                            [k for k, _ in txn.scan()])
    )
    deadline = time.monotonic() + 10
    while not second_out and time.monotonic() < deadline:
        time.sleep(0.01)
    assert second_out and second_out[0] == (b"1", True, [b"a", b"b"])
    assert len(second_out) == 1  # its acknowledgement waits for its own flush, after ours
    store.release.set()
    first.join(10)
    second.join(10)
    assert first_out == [True, "committed"]
    assert second_out[1:] == ["committed"]
    with store.begin() as txn:
        assert list(txn.scan()) == [(b"a", b"1"), (b"b", b"1+1")]
    store.close()


def _wait_for(outcomes: list[list], n: int) -> None:
    deadline = time.monotonic() + 10
    while any(len(o) < n for o in outcomes) and time.monotonic() < deadline:
        time.sleep(0.01)


def test_writers_join_the_open_batch_while_a_flush_runs_and_it_is_handed_over(
    tmp_path: Path,
) -> None:
    store = _HeldFlushes(str(tmp_path / "s"))
    first, first_out = _commit_in_thread(store, lambda txn: txn.put(b"a", b"1"))
    assert store.flushing.wait(10)
    # Nobody waits for the held flush while holding the writer mutex: every later writer runs
    # its transaction now, one after another, and joins the one open batch.
    later = [
        _commit_in_thread(store, lambda txn, i=i: txn.put(b"b%d" % i, txn.get(b"a") or b"?"))
        for i in range(3)
    ]
    _wait_for([out for _, out in later], 1)
    assert [out for _, out in later] == [[True], [True], [True]]
    assert store.flushes == 1
    store.release.set()
    for t, _ in [(first, None), *later]:
        t.join(10)
    assert first_out == [True, "committed"]
    assert [out for _, out in later] == [[True, "committed"]] * 3
    # The flush of the first batch sealed the second and woke one of its members to flush it.
    assert store.flushes == 2
    with store.begin() as txn:
        assert list(txn.scan()) == [(b"a", b"1"), (b"b0", b"1"), (b"b1", b"1"), (b"b2", b"1")]
    store.close()


class _Traced(_HeldFlushes):
    """Records which thread writes and commits each batch."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.events: list[tuple[str, str]] = []

    def _batch_write(self, handle: object) -> None:
        self.events.append(("write", threading.current_thread().name))
        super()._batch_write(handle)  # type: ignore[arg-type]

    def _batch_commit(self, handle: object) -> None:
        self.events.append(("commit", threading.current_thread().name))
        super()._batch_commit(handle)


def _two_batches(store: _Traced) -> tuple[list, list]:
    first, first_out = _commit_in_thread(store, lambda txn: txn.put(b"a", b"1"), "first")
    assert store.flushing.wait(10)
    later = [_commit_in_thread(store, lambda txn, i=i: txn.put(b"b%d" % i, b"2"), f"later-{i}")
             for i in range(3)]
    _wait_for([out for _, out in later], 1)
    store.release.set()
    for t, _ in [(first, None), *later]:
        t.join(10)
    assert first_out == [True, "committed"]
    assert [out for _, out in later] == [[True, "committed"]] * 3
    with store.begin() as txn:
        assert [k for k, _ in txn.scan()] == [b"a", b"b0", b"b1", b"b2"]
    return first_out, store.events


def test_the_flushing_thread_writes_the_next_batch_before_it_wakes_its_own(
    tmp_path: Path,
) -> None:
    store = _Traced(str(tmp_path / "s"))
    _, events = _two_batches(store)
    # The thread that flushed the first batch also flushed the second, and wrote it (its puts)
    # before it woke the first batch's members.
    assert events == [("commit", "first"), ("write", "first"), ("commit", "first")]
    store.close()


def test_after_its_share_of_flushes_a_thread_hands_the_next_batch_to_one_of_its_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine import batching

    monkeypatch.setattr(batching, "FLUSHES_PER_THREAD", 1)
    store = _Traced(str(tmp_path / "s"))
    _, events = _two_batches(store)
    assert events[0] == ("commit", "first")
    assert len(events) == 2 and events[1][0] == "commit" and events[1][1].startswith("later-")
    store.close()


def test_a_flush_grows_the_map_while_a_batch_is_open(tmp_path: Path) -> None:
    # The open batch holds a read snapshot, and stays open until the flush ends: growing the map
    # (which needs every read transaction closed) must not wait for it.
    store = _HeldFlushes(str(tmp_path / "s"), map_size=1 << 20)
    store.release.set()
    for i in range(10):
        with store.begin(write=True) as txn:
            txn.put(b"fill%04d" % i, b"x" * 1500)
    size = store._env.info()["map_size"]
    store.release.clear()
    store.flushing.clear()
    # A value as large as the whole map: its flush must grow the map.
    first, first_out = _commit_in_thread(store, lambda txn: txn.put(b"big", b"y" * size))
    assert store.flushing.wait(10)
    second, second_out = _commit_in_thread(store, lambda txn: txn.put(b"b", txn.get(b"fill0000")))
    _wait_for([second_out], 1)
    assert second_out == [True]  # its batch is open, its snapshot taken
    started = time.monotonic()
    store.release.set()
    first.join(20)
    second.join(20)
    assert time.monotonic() - started < 10  # no wait for the open batch's snapshot
    assert first_out == [True, "committed"] and second_out == [True, "committed"]
    assert store._env.info()["map_size"] > size
    with store.begin() as txn:
        assert txn.get(b"b") == b"x" * 1500 and len(txn.get(b"big")) == size
    store.close()


def _arm_a_failure(store: _HeldFlushes, key: bytes, value: bytes) -> None:
    """Store one pair, flushed normally; the next flush is then held, and fails."""
    with store.begin(write=True) as txn:
        store.release.set()
        txn.put(key, value)
    store.release.clear()
    store.flushing.clear()
    store.fail_with = errors.DurabilityError("fsync failed (injected)")


def test_a_failed_flush_fails_the_batch_that_read_through_it(tmp_path: Path) -> None:
    store = _HeldFlushes(str(tmp_path / "s"))
    _arm_a_failure(store, b"kept", b"0")
    first, first_out = _commit_in_thread(store, lambda txn: txn.put(b"a", b"1"))
    assert store.flushing.wait(10)
    second, second_out = _commit_in_thread(store, lambda txn: txn.put(b"b", txn.get(b"a")))
    _wait_for([second_out], 1)
    assert second_out == [True]  # its transaction ran, reading a change not yet durable
    store.release.set()
    first.join(10)
    second.join(10)
    assert isinstance(first_out[-1], errors.DurabilityError)
    # The second read what never landed: it fails too, with an error of the same kind.
    assert isinstance(second_out[-1], errors.DurabilityError)
    assert "read from failed" in str(second_out[-1])
    store.fail_with = None
    with store.begin() as txn:
        assert list(txn.scan()) == [(b"kept", b"0")]
    with store.begin(write=True) as txn:  # the store goes on working
        txn.put(b"after", b"1")
    with store.begin() as txn:
        assert list(txn.scan()) == [(b"after", b"1"), (b"kept", b"0")]
    store.close()


class _HeldAborts(_HeldFlushes):
    """Also holds the abort of a batch that fails because the batch it read through failed."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.aborting = threading.Event()
        self.release_abort = threading.Event()
        self.release_abort.set()

    def _batch_abort(self, handle: object) -> None:
        if self._inflight is not None and self._inflight.handle is handle \
                and self._inflight.error is not None and not self.flushing.is_set():
            self.aborting.set()
            assert self.release_abort.wait(30)
        super()._batch_abort(handle)  # type: ignore[arg-type]


def test_a_failed_flush_fails_only_the_batch_that_read_through_it(tmp_path: Path) -> None:
    # A fails; B read through A, so it fails without being written. C, opened while B is being
    # failed, must not read through B (whose changes will never land): it reads the durable
    # state and commits, instead of failing in turn (and so on, for as long as writers come).
    store = _HeldAborts(str(tmp_path / "s"))
    _arm_a_failure(store, b"n", b"0")
    a, a_out = _commit_in_thread(store, lambda txn: txn.put(b"n", b"1"))
    assert store.flushing.wait(10)
    b, b_out = _commit_in_thread(store, lambda txn: txn.put(b"n", txn.get(b"n") + b"+1"))
    _wait_for([b_out], 1)
    store.flushing.clear()
    store.release_abort.clear()
    store.release.set()  # A fails; B is failed in turn, and held there
    assert store.aborting.wait(10)
    store.fail_with = None
    c, c_out = _commit_in_thread(store, lambda txn: (txn.get(b"n"), txn.put(b"n", b"c")))
    _wait_for([c_out], 1)
    store.release_abort.set()
    for t in (a, b, c):
        t.join(10)
    assert isinstance(a_out[-1], errors.DurabilityError)
    assert isinstance(b_out[-1], errors.DurabilityError)
    assert c_out == [(b"0", True), "committed"]  # read the durable state, not B's change
    with store.begin() as txn:
        assert txn.get(b"n") == b"c"
    store.close()


class _FlakyFlushes(LmdbStore):
    """Every flush fails, before anything is written, with probability ``p``."""

    def __init__(self, path: str, p: float, seed: int) -> None:
        super().__init__(path)
        self._rng = random.Random(seed)
        self._p = p
        self.failed = 0

    def _batch_commit(self, handle: object) -> None:
        if self._rng.random() < self._p:  # only the flushing thread calls this
            self.failed += 1
            self._release_snapshot(handle)  # type: ignore[arg-type]
            raise errors.DurabilityError("fsync failed (injected)")
        super()._batch_commit(handle)  # type: ignore[arg-type]


def test_acknowledged_increments_survive_random_flush_failures(tmp_path: Path) -> None:
    # Read-modify-write from many threads while one flush in ten fails: every acknowledged
    # increment is in the store, and no refused one is (a batch that read through a failed
    # one must fail with it), and nobody is left waiting.
    store = _FlakyFlushes(str(tmp_path / "s"), p=0.1, seed=7)
    keys = [b"c%d" % i for i in range(3)]
    acked = {k: 0 for k in keys}
    refused = [0]
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(60):
            k = rng.choice(keys)
            try:
                with store.begin(write=True) as txn:
                    txn.put(k, b"%d" % (int(txn.get(k) or b"0") + 1))
            except errors.DurabilityError:
                with lock:
                    refused[0] += 1
                continue
            with lock:
                acked[k] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert store.failed > 0 and refused[0] > 0
    assert sum(acked.values()) + refused[0] == 12 * 60
    with store.begin() as txn:
        assert {k: int(txn.get(k) or b"0") for k in keys} == acked
    store.close()


def test_close_waits_for_the_flush_in_flight(tmp_path: Path) -> None:
    store = _HeldFlushes(str(tmp_path / "s"))
    first, first_out = _commit_in_thread(store, lambda txn: txn.put(b"a", b"1"))
    assert store.flushing.wait(10)
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()  # the in-flight flush must end before the environment closes
    store.release.set()
    closer.join(10)
    first.join(10)
    assert first_out == [True, "committed"]
    reopened = LmdbStore(str(tmp_path / "s"))
    with reopened.begin() as txn:
        assert txn.get(b"a") == b"1"
    reopened.close()
