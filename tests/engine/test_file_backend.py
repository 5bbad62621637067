"""The file backend's own promises: files a person can read, crash safety, locking, write cost.

What every backend promises is tested in test_contract.py; this file covers the on-disk format
and the failure modes that only a journal-and-snapshot store has.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import errors, open_store
from engine.backends.file import FileStore
from engine.backends.file import format as file_format
from engine.backends.file import store as file_store
from engine.backends.file import table as file_table

ROOT = Path(__file__).resolve().parents[2]


def _put(store: FileStore, pairs: dict[bytes, bytes | None]) -> None:
    with store.begin(write=True) as txn:
        for k, v in pairs.items():
            if v is None:
                txn.delete(k)
            else:
                txn.put(k, v)


def _all(store: FileStore) -> dict[bytes, bytes]:
    with store.begin() as txn:
        return dict(txn.scan())


def _journal(path: Path) -> Path:
    return path / "journal.jsonl"


def _batches(path: Path, name: str = "journal.jsonl") -> list[tuple[int, list[dict]]]:
    """The journal's batches: (entry, its lines as JSON), one per commit line."""
    out: list[tuple[int, list[dict]]] = []
    lines: list[dict] = []
    for line in (path / name).read_text("utf-8").splitlines():
        doc = json.loads(line)  # every line is JSON on its own
        if "commit" in doc:
            assert doc["changes"] == len(lines)
            out.append((doc["commit"], lines))
            lines = []
        else:
            lines.append(doc)
    assert not lines
    return out


def _seqs(path: Path) -> list[int]:
    return [seq for seq, _ in _batches(path)]


def _three_batches(path: Path) -> FileStore:
    store = FileStore(str(path))
    _put(store, {b"one": b"1"})
    _put(store, {b"two": b"2"})
    _put(store, {b"three": b"3"})
    return store


EXPECTED_THREE = {b"one": b"1", b"two": b"2", b"three": b"3"}


# -- layout and format -------------------------------------------------------------------------


def test_open_store_makes_the_documented_layout(tmp_path: Path) -> None:
    store = open_store("file", data_dir=str(tmp_path))
    try:
        path = tmp_path / "file"
        assert {p.name for p in path.iterdir()} == {
            "meta.json",
            "snapshot.json",
            "journal.jsonl",
            "lock",
        }
        meta = json.loads((path / "meta.json").read_text())
        assert meta["backend"] == "file" and meta["format_version"] == 2
        assert store.metadata == meta
        assert store.stats()["provider"] == "file"
    finally:
        store.close()


def test_files_are_human_readable(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), compact_min_bytes=1 << 30)
    _put(store, {b"user:alice": b'{"name": "Alice"}', b"caf\xc3\xa9": b"\xff\x00bin"})
    _put(store, {b"user:bob": b"Bob", b"user:alice": None})

    # The journal: one JSON object per pair, a JSON value embedded as JSON, each batch closed by
    # its commit line.
    assert _journal(tmp_path).read_text("utf-8").splitlines()[:2] == [
        '{"key": {"text": "user:alice"}, "value": {"name": "Alice"}}',
        '{"key": {"text": "café"}, "base64": "/wBiaW4="}',
    ]
    assert _batches(tmp_path) == [
        (1, [{"key": {"text": "user:alice"}, "value": {"name": "Alice"}},
             {"key": {"text": "café"}, "base64": "/wBiaW4="}]),
        (2, [{"key": {"text": "user:bob"}, "text": "Bob"},
             {"key": {"text": "user:alice"}, "deleted": True}]),
    ]

    store.compact()
    assert _journal(tmp_path).read_bytes() == b""
    lines = (tmp_path / "snapshot.json").read_text("utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["seq"] == 2 and header["records"] == 2 and header["version"] == 2
    # One pair per line, so that a diff or a grep shows records.
    assert lines[1:] == [
        '{"section": "other"}',
        '{"key": {"text": "café"}, "base64": "/wBiaW4="}',
        '{"key": {"text": "user:bob"}, "text": "Bob"}',
    ]
    store.close()

    store = FileStore(str(tmp_path))
    assert _all(store) == {"café".encode(): b"\xff\x00bin", b"user:bob": b"Bob"}
    store.close()


def test_binary_keys_empty_key_and_large_values_survive_compaction(tmp_path: Path) -> None:
    big_text = ("x" * 1023 + "\n").encode() * 1024  # 1 MiB of text
    big_binary = bytes(range(256)) * 4096  # 1 MiB, not UTF-8
    pairs = {b"": b"empty key", b"\x00\xff": big_binary, b"t": big_text, b"\x80": b""}
    # Line breaks of every kind inside keys and values must not break the one-line entries.
    pairs["\n\r\u2028\u0085".encode()] = "\u2029\n".encode()
    store = FileStore(str(tmp_path), sync=False)
    _put(store, pairs)
    assert _all(store) == pairs
    store.close()
    store = FileStore(str(tmp_path), sync=False)  # read back from the journal
    assert _all(store) == pairs
    store.compact()
    store.close()
    store = FileStore(str(tmp_path), sync=False)
    assert _all(store) == pairs
    with store.begin() as txn:
        assert [k for k, _ in txn.scan(reverse=True)] == sorted(pairs, reverse=True)
    store.close()


# -- crash safety ------------------------------------------------------------------------------


_FOURTH = file_format.journal_batch(4, {b"four": b"4", b"4": b"four"})
TORN_TAILS = {
    "half a real batch": _FOURTH[:-9],
    "a whole batch but its last newline": _FOURTH[:-1],
    "a batch without its commit line": _FOURTH[: _FOURTH.index(b'{"commit"')],
    "garbage line": b"garbage\n",
    "zeros": b"\0" * 4096,
    "a batch failing its checksum": _FOURTH.replace(b'"four"', b'"fore"'),
}


@pytest.mark.parametrize("tail", list(TORN_TAILS.values()), ids=list(TORN_TAILS))
def test_torn_tail_is_dropped_and_truncated(tmp_path: Path, tail: bytes) -> None:
    _three_batches(tmp_path).close()
    size = _journal(tmp_path).stat().st_size
    with open(_journal(tmp_path), "ab") as f:
        f.write(tail)

    # A reader skips the tail but may not change the files.
    reader = FileStore(str(tmp_path), readonly=True)
    assert _all(reader) == EXPECTED_THREE
    assert _journal(tmp_path).stat().st_size == size + len(tail)
    reader.close()

    store = FileStore(str(tmp_path))
    assert _all(store) == EXPECTED_THREE
    assert _journal(tmp_path).stat().st_size == size
    _put(store, {b"four": b"4"})
    store.close()
    store = FileStore(str(tmp_path))
    assert _all(store) == {**EXPECTED_THREE, b"four": b"4"}
    assert _seqs(tmp_path) == [1, 2, 3, 4]
    store.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_damage_in_the_middle_is_refused(tmp_path: Path, readonly: bool) -> None:
    _three_batches(tmp_path).close()
    raw = _journal(tmp_path).read_bytes()
    damaged = raw.replace(b'{"text": "two"}, "value": 2}', b'{"text": "two"}, "value": 3}')
    assert damaged != raw
    _journal(tmp_path).write_bytes(damaged)
    with pytest.raises(errors.CorruptStoreError, match="valid batches follow"):
        FileStore(str(tmp_path), readonly=readonly)
    assert _journal(tmp_path).read_bytes() == damaged  # nothing was "repaired" away


def test_out_of_sequence_entry_is_refused(tmp_path: Path) -> None:
    _three_batches(tmp_path).close()
    lines = _journal(tmp_path).read_bytes().splitlines(keepends=True)  # two per batch
    _journal(tmp_path).write_bytes(b"".join(lines[0:2] + lines[4:6] + lines[2:4]))
    with pytest.raises(errors.CorruptStoreError, match="follows entry"):
        FileStore(str(tmp_path))


def test_journal_that_skips_past_the_snapshot_is_refused(tmp_path: Path) -> None:
    _three_batches(tmp_path).close()
    lines = _journal(tmp_path).read_bytes().splitlines(keepends=True)
    _journal(tmp_path).write_bytes(b"".join(lines[2:]))  # entry 1 lost
    with pytest.raises(errors.CorruptStoreError, match="snapshot covers only up to 0"):
        FileStore(str(tmp_path))


def test_damaged_snapshot_is_refused(tmp_path: Path) -> None:
    store = _three_batches(tmp_path)
    store.compact()
    store.close()
    snap = tmp_path / "snapshot.json"
    snap.write_bytes(snap.read_bytes().replace(b'"two"}, "value": 2}', b'"two"}, "value": 3}'))
    with pytest.raises(errors.CorruptStoreError, match="checksum"):
        FileStore(str(tmp_path))


def test_journal_entries_covered_by_the_snapshot_are_skipped(tmp_path: Path) -> None:
    FileStore(str(tmp_path)).close()
    # A snapshot at seq 2 that disagrees with the journal's entries 1 and 2: if replay applied
    # them, "a" would come out as "journal".
    fd = os.open(tmp_path / "snapshot.json", os.O_WRONLY | os.O_TRUNC)
    file_format.write_snapshot(fd, [(b"a", b"snapshot")], 2)
    os.close(fd)
    _journal(tmp_path).write_bytes(
        file_format.journal_batch(1, {b"a": b"journal"})
        + file_format.journal_batch(2, {b"b": b"journal"})
        + file_format.journal_batch(3, {b"c": b"3"})
    )
    store = FileStore(str(tmp_path), readonly=True)
    assert _all(store) == {b"a": b"snapshot", b"c": b"3"}
    store.close()


def test_leftover_temp_files_are_removed(tmp_path: Path) -> None:
    _three_batches(tmp_path).close()
    leftover = tmp_path / "snapshot.json.tmp-123-abcd"
    leftover.write_bytes(b'{"snapshot": {"seq": 99')  # a compaction that crashed mid-write
    store = FileStore(str(tmp_path))
    assert not leftover.exists()
    assert _all(store) == EXPECTED_THREE
    store.close()


def test_failed_fsync_is_a_durability_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(str(tmp_path))
    _put(store, {b"a": b"1"})
    size = _journal(tmp_path).stat().st_size

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(file_store.os, "fsync", failing_fsync)
    with pytest.raises(errors.DurabilityError):
        _put(store, {b"b": b"2", b"a": b"changed"})
    monkeypatch.undo()

    assert _all(store) == {b"a": b"1"}
    assert _journal(tmp_path).stat().st_size == size
    _put(store, {b"c": b"3"})  # the store goes on working
    store.close()
    store = FileStore(str(tmp_path))
    assert _all(store) == {b"a": b"1", b"c": b"3"}
    assert _seqs(tmp_path) == [1, 2]
    store.close()


def test_failed_write_that_cannot_be_truncated_blocks_writes_until_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(str(tmp_path))
    _put(store, {b"a": b"1"})

    def fail(*args: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(file_store.os, "fsync", fail)
    monkeypatch.setattr(file_store.os, "ftruncate", fail)
    with pytest.raises(errors.DurabilityError):
        _put(store, {b"b": b"2"})
    monkeypatch.setattr(file_store.os, "fsync", os.fsync)
    with pytest.raises(errors.DurabilityError, match="failed write"):
        _put(store, {b"c": b"3"})
    monkeypatch.undo()
    _put(store, {b"c": b"3"})  # the failed line is cut off first, then this one appended
    store.close()
    store = FileStore(str(tmp_path))
    assert _all(store) == {b"a": b"1", b"c": b"3"}
    store.close()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_full_disk_is_store_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    store = FileStore(str(tmp_path))
    _put(store, {b"a": b"1"})

    def full(*args: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(file_store.os, "pwrite", full)
    with pytest.raises(errors.StoreFullError):
        _put(store, {b"b": b"2"})
    monkeypatch.undo()
    _put(store, {b"c": b"3"})
    assert _all(store) == {b"a": b"1", b"c": b"3"}
    store.close()


# -- write cost --------------------------------------------------------------------------------


def test_a_commit_appends_bytes_in_proportion_to_the_transaction(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), sync=False, compact_min_bytes=1 << 30)

    def appended_by_one_put(key: bytes) -> int:
        before = _journal(tmp_path).stat().st_size
        _put(store, {key: b"value"})
        return _journal(tmp_path).stat().st_size - before

    small = appended_by_one_put(b"probe-1")
    with store.begin(write=True) as txn:
        for i in range(5000):
            txn.put(b"filler%05d" % i, b"x" * 100)
    large = appended_by_one_put(b"probe-2")
    assert large - small <= 2  # only the sequence number's digits differ
    assert small < 120
    store.close()


def test_compaction_follows_the_threshold_and_is_amortised(tmp_path: Path) -> None:
    threshold = 8192
    store = FileStore(str(tmp_path), sync=False, compact_min_bytes=threshold)
    appended = snapshots_written = compactions = 0
    for i in range(1500):
        key, value = b"key%05d" % (i % 700), b"v" * 50  # some overwrites, the store grows
        seq = store.stats()["seq"] + 1
        appended += len(file_format.journal_batch(seq, {key: value}))
        _put(store, {key: value})
        store.wait_for_compaction()  # it runs in the background: let it end, to look at it
        stats = store.stats()
        if stats["compactions"] != compactions:
            compactions = stats["compactions"]
            snapshots_written += stats["snapshot_bytes"]
            assert stats["journal_bytes"] == 0
        # Compaction runs as soon as the journal outgrows both the threshold and the snapshot.
        assert stats["journal_bytes"] <= max(threshold, stats["snapshot_bytes"])
    assert compactions >= 5
    # Each snapshot is paid for by at least as many journal bytes: O(1) per byte written.
    assert snapshots_written <= 2 * appended
    store.close()
    store = FileStore(str(tmp_path))
    assert len(_all(store)) == 700
    store.close()


# -- locking and processes ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS])
def test_filesystem_without_flock_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def no_flock(fd: int, op: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(file_store.fcntl, "flock", no_flock)
    with pytest.raises(errors.ConfigurationError, match="flock"):
        FileStore(str(tmp_path))


def _python(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


CLAIMER = """
    import json, os, sys, time
    from engine.backends.file import FileStore

    path, name, go = sys.argv[1:4]
    store = FileStore(path, sync=False, compact_min_bytes=2048)
    while not os.path.exists(go):
        time.sleep(0.001)
    won = []
    for i in range(200):
        with store.begin(write=True) as txn:
            if txn.put(b"shared%03d" % i, name.encode(), overwrite=False):
                won.append(i)
        with store.begin(write=True) as txn:
            txn.put(f"{name}:{i:03d}".encode(), str(i).encode())
    store.close()
    print(json.dumps(won))
"""


def test_two_processes_writing_lose_nothing(tmp_path: Path) -> None:
    path, go = str(tmp_path / "store"), str(tmp_path / "go")
    FileStore(path).close()
    procs = {name: _python(CLAIMER, path, name, go) for name in ("p1", "p2")}
    Path(go).touch()
    won = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        won[name] = set(json.loads(out))
    assert won["p1"].isdisjoint(won["p2"])  # no key claimed twice
    assert won["p1"] | won["p2"] == set(range(200))  # and none lost
    store = FileStore(path)
    data = _all(store)
    for name in procs:
        for i in range(200):
            assert data[f"{name}:{i:03d}".encode()] == str(i).encode()
        for i in won[name]:
            assert data[b"shared%03d" % i] == name.encode()
    assert len(data) == 600
    assert store.stats()["snapshot_seq"] > 0  # compactions happened while both were writing
    store.close()


TRANSFERRER = """
    import random, sys
    from engine.backends.file import FileStore

    store = FileStore(sys.argv[1], sync=False, compact_min_bytes=4096)
    rng = random.Random(1)
    for n in range(1, 401):
        with store.begin(write=True) as txn:
            a, b = rng.sample(range(10), 2)
            ka, kb = b"acct%d" % a, b"acct%d" % b
            txn.put(ka, b"%d" % (int(txn.get(ka)) - 1))
            txn.put(kb, b"%d" % (int(txn.get(kb)) + 1))
            txn.put(b"counter", b"%d" % n)
    store.close()
"""


def test_reader_in_another_process_sees_consistent_states(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    store = FileStore(path)
    _put(store, {**{b"acct%d" % i: b"100" for i in range(10)}, b"counter": b"0"})
    store.close()

    writer = _python(TRANSFERRER, path)
    reader = FileStore(path, readonly=True)
    states = 0
    while True:
        running = writer.poll() is None
        with reader.begin() as txn:
            accounts = dict(txn.scan(prefix=b"acct"))
            assert len(accounts) == 10
            assert sum(int(v) for v in accounts.values()) == 1000  # never a half transfer
            assert txn.get(b"acct0") == accounts[b"acct0"]  # one version for the whole txn
            states += 1
        if not running:
            break
    assert writer.returncode == 0, writer.stderr.read()  # type: ignore[union-attr]
    with reader.begin() as txn:
        assert txn.get(b"counter") == b"400"  # the reader caught up with the last commit
    assert states > 1
    reader.close()


def test_second_instance_catches_up_and_old_readers_keep_their_view(tmp_path: Path) -> None:
    # Two FileStore objects on one path lock each other out exactly as two processes do.
    a = FileStore(str(tmp_path), compact_min_bytes=1 << 30)
    b = FileStore(str(tmp_path), readonly=True)
    _put(a, {b"k": b"1", b"gone": b"x"})
    old = b.begin()
    assert old.get(b"k") == b"1"
    _put(a, {b"k": b"2", b"gone": None, b"new": b"n"})
    a.compact()  # the files are replaced, too
    with b.begin() as txn:
        assert dict(txn.scan()) == {b"k": b"2", b"new": b"n"}
    assert dict(old.scan()) == {b"k": b"1", b"gone": b"x"}
    old.abort()

    # A writer catches up before deciding: no second winner of an insert-if-absent.
    c = FileStore(str(tmp_path))
    with c.begin(write=True) as txn:
        assert txn.put(b"claim", b"c", overwrite=False)
    with a.begin(write=True) as txn:
        assert not txn.put(b"claim", b"a", overwrite=False)
    for store in (a, b, c):
        store.close()


# -- isolation in one process -----------------------------------------------------------------


def test_old_reader_sees_deleted_and_not_inserted_keys_in_every_scan(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), sync=False)
    keys = [b"k%04d" % i for i in range(3000)]  # more than one scan chunk
    with store.begin(write=True) as txn:
        for k in keys:
            txn.put(k, b"old")
    reader = store.begin()
    with store.begin(write=True) as txn:
        for i, k in enumerate(keys):
            if i % 3 == 0:
                txn.delete(k)
            elif i % 3 == 1:
                txn.put(k, b"new")
            txn.put(k + b"+", b"inserted")
    expected = [(k, b"old") for k in keys]
    assert list(reader.scan()) == expected
    assert list(reader.scan(reverse=True)) == expected[::-1]
    assert list(reader.scan(b"k0100", b"k0200", limit=7)) == expected[100:107]
    assert list(reader.scan(prefix=b"k29", reverse=True, limit=3)) == expected[::-1][:3]
    assert reader.get(b"k0000") == b"old" and reader.get(b"k0000+") is None
    reader.abort()
    with store.begin() as txn:
        assert len(list(txn.scan())) == 2000 + 3000
    assert not store._committed.history  # released with the last old reader
    store.close()


def test_forgotten_reader_does_not_pin_history_forever(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), sync=False)
    _put(store, {b"a": b"1"})
    reader = store.begin()
    _put(store, {b"a": b"2"})
    assert store._committed.history
    del reader
    gc.collect()
    with store.begin() as txn:  # queued releases are applied here
        assert txn.get(b"a") == b"2"
    assert not store._committed.history
    store.close()


def test_group_commit_from_many_threads(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    store.flush_delay = 0.002  # let writers pile up behind each flush

    def work(t: int) -> None:
        for i in range(25):
            _put(store, {b"t%d-%02d" % (t, i): b"%d" % i})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(_all(store)) == 200
    seqs = _seqs(tmp_path)
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) <= 200
    store.close()
    store = FileStore(str(tmp_path))
    assert len(_all(store)) == 200
    store.close()


# -- opening ------------------------------------------------------------------------------------


def test_missing_readonly_and_closed(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(errors.StoreNotFoundError):
        FileStore(str(missing), create=False)
    with pytest.raises(errors.StoreNotFoundError):
        FileStore(str(missing), readonly=True)
    assert not missing.exists()

    FileStore(str(tmp_path / "s")).close()
    ro = FileStore(str(tmp_path / "s"), readonly=True)
    with pytest.raises(errors.ReadOnlyError):
        ro.begin(write=True)
    txn = ro.begin()
    with pytest.raises(errors.ReadOnlyError):
        txn.put(b"a", b"1")
    with pytest.raises(errors.ReadOnlyError):
        ro.compact()
    ro.close()
    with pytest.raises(errors.StoreClosedError):
        txn.get(b"a")
    with pytest.raises(errors.StoreClosedError):
        ro.begin()


@pytest.mark.parametrize(
    "meta, error",
    [
        ('{"format": "autobyteus-kv", "format_version": 1, "backend": "lmdb"}', "Incompatible"),
        ('{"format": "autobyteus-kv", "format_version": 99, "backend": "file"}', "Incompatible"),
        ("{not json", "Corrupt"),
    ],
)
def test_foreign_or_damaged_metadata_is_refused(tmp_path: Path, meta: str, error: str) -> None:
    FileStore(str(tmp_path)).close()
    (tmp_path / "meta.json").write_text(meta)
    with pytest.raises(errors.CorruptStoreError) as info:
        FileStore(str(tmp_path))
    assert type(info.value).__name__.startswith(error)


def test_files_without_meta_are_not_overwritten(tmp_path: Path) -> None:
    _three_batches(tmp_path).close()
    (tmp_path / "meta.json").unlink()
    with pytest.raises(errors.CorruptStoreError, match="no meta.json"):
        FileStore(str(tmp_path))
    assert len(_seqs(tmp_path)) == 3


# -- a model check -----------------------------------------------------------------------------

_keys = st.binary(max_size=3)
_ops = st.lists(
    st.tuples(st.sampled_from(["put", "insert", "delete"]), _keys, st.binary(max_size=4)),
    max_size=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    txns=st.lists(st.tuples(_ops, st.sampled_from(["commit", "abort", "reopen"])), max_size=12),
    bounds=st.tuples(st.none() | _keys, st.none() | _keys, st.none() | _keys),
    reverse=st.booleans(),
    limit=st.none() | st.integers(0, 5),
)
def test_matches_a_dict_model(txns, bounds, reverse, limit) -> None:  # type: ignore[no-untyped-def]
    model: dict[bytes, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = FileStore(tmp, sync=False, compact_min_bytes=300)
        try:
            for ops, end in txns:
                pending = dict(model)
                txn = store.begin(write=True)
                for op, key, value in ops:
                    if op == "put":
                        assert txn.put(key, value)
                        pending[key] = value
                    elif op == "insert":
                        assert txn.put(key, value, overwrite=False) == (key not in pending)
                        pending.setdefault(key, value)
                    else:
                        assert txn.delete(key) == (key in pending)
                        pending.pop(key, None)
                if end == "abort":
                    txn.abort()
                else:
                    txn.commit()
                    model = pending
                if end == "reopen":
                    store.close()
                    store = FileStore(tmp, sync=False, compact_min_bytes=300)
            start, stop, prefix = bounds
            want = sorted(
                (k, v)
                for k, v in model.items()
                if (start is None or k >= start)
                and (stop is None or k < stop)
                and (prefix is None or k.startswith(prefix))
            )
            if reverse:
                want.reverse()
            if limit is not None:
                want = want[:limit]
            with store.begin() as txn:
                got = list(txn.scan(start, stop, prefix=prefix, reverse=reverse, limit=limit))
            assert got == want
        finally:
            store.close()


class _SmallChunks(file_table.SortedKeys):
    LOAD = 4  # split and merge often


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 300)), max_size=400),
    probe=st.integers(-1, 301),
    n=st.integers(1, 40),
)
def test_sorted_keys_match_a_sorted_list(ops: list, probe: int, n: int) -> None:
    keys = _SmallChunks(sorted(b"%03d" % i for i in range(0, 300, 7)))
    model = set(b"%03d" % i for i in range(0, 300, 7))
    for add, i in ops:
        key = b"%03d" % i
        if add and key not in model:
            keys.add(key)
            model.add(key)
        elif not add and key in model:
            keys.remove(key)
            model.discard(key)
    ordered = sorted(model)
    assert list(keys) == ordered and len(keys) == len(ordered)
    at = b"%03d" % probe if probe >= 0 else b""
    assert keys.forward(at, True, n) == [k for k in ordered if k >= at][:n]
    assert keys.forward(at, False, n) == [k for k in ordered if k > at][:n]
    assert keys.backward(at, n) == [k for k in reversed(ordered) if k < at][:n]
    assert keys.backward(None, n) == ordered[::-1][:n]
