"""The file backend's format version 2 and its compaction off the write path: the upgrade of a
version-1 store in place (crash-safe at each step), pairs as readable lines whatever their bytes,
writers going on while a snapshot is written, and a crash at each point of a compaction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import errors
from engine.backends.file import FileStore, format_v1
from engine.backends.file import compaction as file_compaction
from engine.backends.file import format as file_format
from engine.backends.file import store as file_store
from engine.backends.file import table as file_table
from engine.keys import pack

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


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name != "lock"}


# -- lines a person can read, for any bytes -----------------------------------------------------

RECORD = pack(("c", "prompts", "r", 130))
CLAIM = pack(("c", "prompts", "u", "name", "greeting"))
ORDERED = pack(("c", "prompts", "o", "created", 1765432100000000, 130))
SEQUENCE = pack(("q", "prompts"))
TTL_KEY = pack(("t", "ingress", "k", "msg-1"))
TTL_EXPIRY = pack(("t", "ingress", "x", 1765432100000000, "k", "msg-1"))


def test_keys_decoded_and_json_values_embedded() -> None:
    value = b'{"v":1,"name":"greeting","content":"Hi \\u00e9 \xc3\xa9"}'
    assert file_format.pair_line(RECORD, value) == (
        '{"key": ["c", "prompts", "r", 130], "value": ' + value.decode() + "}\n"
    )
    assert file_format.pair_line(CLAIM, pack((130,))) == (
        '{"key": ["c", "prompts", "u", "name", "greeting"], "tuple": [130]}\n'
    )
    assert file_format.pair_line(ORDERED, b"") == (
        '{"key": ["c", "prompts", "o", "created", 1765432100000000, 130], "text": ""}\n'
    )
    assert file_format.pair_line(pack(("c", b"\x00\xff", None, -5)), b"\xff") == (
        '{"key": ["c", {"base64": "AP8="}, null, -5], "base64": "/w=="}\n'
    )
    assert file_format.pair_line(RECORD, None) == (
        '{"key": ["c", "prompts", "r", 130], "deleted": true}\n'
    )


@pytest.mark.parametrize(
    "value",
    [
        b'{"a": 1}',
        b' {"a" : [1, 2.50, 1e400]} ',  # spacing and number forms kept byte for byte
        b'"\\ud800"',  # an escaped lone surrogate is JSON text
        b"NaN",  # Python's json reads it; JSON does not
        b'{"a":\n1}',  # JSON, but over two lines
        b"\xef\xbb\xbf{}",  # a byte-order mark
        b"plain text",
        b"\x15\x82",  # a packed tuple
        b"\x15\x82\x00",  # almost one
        b"\xff\xfe",
        b"",
        "\u2028\u2029\x85".encode(),
    ],
)
def test_every_value_comes_back_byte_for_byte(value: bytes) -> None:
    line = file_format.pair_line(RECORD, value)
    assert line.count("\n") == 1 and line.endswith("\n")
    json.loads(line)  # each line is JSON on its own
    assert file_format.parse_pair(line[:-1]) == (RECORD, value)


@settings(max_examples=300, deadline=None)
@given(
    key=st.one_of(
        st.binary(max_size=40),
        st.lists(
            st.one_of(st.none(), st.integers(), st.text(max_size=8), st.binary(max_size=8)),
            max_size=5,
        ).map(pack),
    ),
    value=st.one_of(
        st.binary(max_size=60),
        st.text(max_size=30).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
            max_leaves=8,
        ).map(lambda d: json.dumps(d).encode()),
    ),
)
def test_any_pair_round_trips(key: bytes, value: bytes) -> None:
    line = file_format.pair_line(key, value)
    assert line.count("\n") == 1
    json.loads(line)
    assert file_format.parse_pair(line[:-1]) == (key, value)
    batch = file_format.journal_batch(7, {key: value})
    read = file_format.parse_journal(batch, 0, None, 6, "journal")
    assert read.changes == {key: value} and read.last_seq == 7 and not read.torn_bytes


def test_snapshot_sections_put_records_first_and_derived_entries_apart(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), sync=False)
    _put(store, {
        RECORD: b'{"name":"greeting"}', pack(("c", "agents", "r", 1)): b'{"name":"a"}',
        CLAIM: pack((130,)), ORDERED: b"", SEQUENCE: pack((130,)), TTL_KEY: pack((1, "x")),
        TTL_EXPIRY: b"", b"raw key": b"raw value",
    })
    store.compact()
    store.close()
    lines = (tmp_path / "snapshot.json").read_text("utf-8").splitlines()
    assert json.loads(lines[0])["records"] == 8
    assert lines[1:] == [
        '{"section": "records", "collection": "agents"}',
        '{"key": ["c", "agents", "r", 1], "value": {"name":"a"}}',
        '{"section": "records", "collection": "prompts"}',
        '{"key": ["c", "prompts", "r", 130], "value": {"name":"greeting"}}',
        '{"section": "sequences"}',
        '{"key": ["q", "prompts"], "tuple": [130]}',
        '{"section": "ttl"}',
        '{"key": ["t", "ingress", "k", "msg-1"], "tuple": [1, "x"]}',
        '{"section": "other"}',
        '{"key": {"text": "raw key"}, "text": "raw value"}',
        '{"section": "indexes"}',
        '{"key": ["c", "prompts", "o", "created", 1765432100000000, 130], "text": ""}',
        '{"key": ["c", "prompts", "u", "name", "greeting"], "tuple": [130]}',
        '{"key": ["t", "ingress", "x", 1765432100000000, "k", "msg-1"], "text": ""}',
    ]


def test_journal_batch_lists_records_before_derived_entries(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), sync=False)
    _put(store, {CLAIM: pack((130,)), RECORD: b"{}", SEQUENCE: pack((130,))})
    store.close()
    lines = (tmp_path / "journal.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(line).get("key", [None])[0:3] for line in lines] == [
        ["c", "prompts", "r"], ["q", "prompts"], ["c", "prompts", "u"], [None],
    ]
    assert json.loads(lines[-1])["commit"] == 1


# -- upgrading a version-1 store ------------------------------------------------------------------

V1_SNAPSHOT = {RECORD: b'{"name":"old"}', b"\xff\x00bin": b"\xff", CLAIM: pack((130,))}
V1_JOURNAL = [
    {RECORD: b'{"name":"new"}', b"added": b"1"},
    {b"\xff\x00bin": None, ORDERED: b""},
]
V1_EXPECTED = {RECORD: b'{"name":"new"}', b"added": b"1", CLAIM: pack((130,)), ORDERED: b""}


def make_v1_store(path: Path) -> None:
    """A store as version 1 wrote it: snapshot at entry 2, journal entries 1..4 (1, 2 stale)."""
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": "autobyteus-kv", "format_version": 1, "backend": "file",
            "created_at": "2026-01-01T00:00:00Z"}
    (path / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    fd = os.open(path / "snapshot.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    format_v1.write_snapshot(fd, file_table.Committed(dict(V1_SNAPSHOT)), 2)
    os.close(fd)
    (path / "journal.jsonl").write_bytes(
        format_v1.journal_line(1, {b"stale": b"x"})
        + format_v1.journal_line(2, {b"stale": None})
        + b"".join(format_v1.journal_line(3 + i, c) for i, c in enumerate(V1_JOURNAL))
        + format_v1.journal_line(5, {b"torn": b"x"})[:-7]  # a write a crash cut off
    )


def test_a_version_1_store_is_read_as_it_is_and_upgraded_by_a_writer(tmp_path: Path) -> None:
    make_v1_store(tmp_path)
    before = _files(tmp_path)
    reader = FileStore(str(tmp_path), readonly=True)
    assert _all(reader) == V1_EXPECTED
    assert reader.metadata["format_version"] == 1
    reader.close()
    assert _files(tmp_path) == before  # a reader changes nothing

    store = FileStore(str(tmp_path))
    assert _all(store) == V1_EXPECTED
    assert store.metadata["format_version"] == 2
    assert json.loads((tmp_path / "meta.json").read_text())["format_version"] == 2
    assert (tmp_path / "journal.jsonl").read_bytes() == b""
    header = json.loads((tmp_path / "snapshot.json").read_text().splitlines()[0])
    assert header["version"] == 2 and header["seq"] == 4 and header["records"] == 4
    _put(store, {b"after": b"2"})
    store.close()
    assert [json.loads(line).get("commit") for line in
            (tmp_path / "journal.jsonl").read_text().splitlines()] == [None, 5]
    store = FileStore(str(tmp_path))
    assert _all(store) == {**V1_EXPECTED, b"after": b"2"}
    store.close()


CRASHING_CHILD = """
    import os, sys
    from engine.backends.file import compaction as file_compaction
    from engine.backends.file import store as file_store

    path, step = sys.argv[1:3]

    def crash_at(name):
        if name == step:
            os._exit(3)

    def half_written_snapshot(fd, *args):
        os.write(fd, b'{"format": "autobyteus-file-snapshot", "version": 2, "se')
        os._exit(3)

    file_compaction._crash_point = crash_at
    if step == "writing the snapshot":
        file_compaction.write_snapshot = half_written_snapshot
    {body}
"""

UPGRADE_BODY = """
    file_store.FileStore(path).close()
    print("finished")
"""

UPGRADE_STEPS = [
    "writing the snapshot", "upgrade: snapshot written", "upgrade: journal emptied", "none",
]


def _child(body: str, *args: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(CRASHING_CHILD).replace("{body}", textwrap.dedent(body).strip())
    return subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300,
    )


@pytest.mark.parametrize("step", UPGRADE_STEPS)
def test_a_crash_at_each_step_of_the_upgrade_leaves_a_store_that_opens(
    tmp_path: Path, step: str
) -> None:
    make_v1_store(tmp_path)
    done = _child(UPGRADE_BODY, str(tmp_path), step)
    assert done.returncode == (0 if step == "none" else 3), done.stderr
    reader = FileStore(str(tmp_path), readonly=True)  # opens as it stands, changing nothing
    assert _all(reader) == V1_EXPECTED
    reader.close()
    store = FileStore(str(tmp_path))  # a writer finishes the upgrade
    assert _all(store) == V1_EXPECTED
    assert store.metadata["format_version"] == 2
    assert not [p for p in tmp_path.iterdir() if file_store.TMP_MARK in p.name]
    _put(store, {b"after": b"1"})
    store.close()
    store = FileStore(str(tmp_path))
    assert _all(store) == {**V1_EXPECTED, b"after": b"1"}
    store.close()


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    FileStore(str(tmp_path)).close()
    meta = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "format_version": 3}))
    with pytest.raises(errors.IncompatibleStoreError, match="versions 1..2"):
        FileStore(str(tmp_path))


# -- compaction off the write path --------------------------------------------------------------


def test_writers_go_on_while_a_snapshot_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = threading.Event(), threading.Event()
    real = file_compaction.write_snapshot

    def held_snapshot(fd: int, *args) -> None:  # type: ignore[no-untyped-def]
        started.set()
        assert release.wait(120), "the test never released the snapshot"
        real(fd, *args)

    store = FileStore(str(tmp_path), sync=False, compact_min_bytes=4096)
    monkeypatch.setattr(file_compaction, "write_snapshot", held_snapshot)
    written: dict[bytes, bytes] = {}
    i = 0
    while not started.is_set():
        written[b"k%05d" % i] = b"%d" % i
        _put(store, {b"k%05d" % i: b"%d" % i})
        i += 1
    # The writer that started the compaction closed the journal as a segment at its entry.
    (segment,) = tmp_path.glob("journal-*")
    switched_at = file_format.frozen_seq(segment.name)
    assert switched_at is not None
    seq_before = store.stats()["seq"]
    old_snapshot = (tmp_path / "snapshot.json").read_bytes()

    # The snapshot write is held: writes still commit, readers see them, nothing waits for it.
    def more_writes() -> None:
        for j in range(200):
            _put(store, {b"during%03d" % j: b"x" * 100, b"k00000": b"changed %d" % j})

    writer = threading.Thread(target=more_writes)
    writer.start()
    writer.join(120)
    assert not writer.is_alive(), "writes waited for the snapshot"
    written.update({b"during%03d" % j: b"x" * 100 for j in range(200)})
    written[b"k00000"] = b"changed 199"
    assert _all(store) == written
    stats = store.stats()
    assert stats["compactions"] == 0 and stats["seq"] == seq_before + 200
    assert (tmp_path / "snapshot.json").read_bytes() == old_snapshot
    assert [p.name for p in tmp_path.glob("journal-*")] == [segment.name]  # no second one

    release.set()
    store.wait_for_compaction()
    stats = store.stats()
    assert stats["compactions"] == 1 and stats["snapshot_seq"] == switched_at
    assert not list(tmp_path.glob("journal-*"))  # the segment went once the snapshot was in
    # The snapshot holds the state at the switch: the first value of k00000, none of "during".
    values, seq = file_format.parse_snapshot((tmp_path / "snapshot.json").read_bytes(), "s")
    assert seq == switched_at and values[b"k00000"] == b"0" and b"during000" not in values
    store.close()
    store = FileStore(str(tmp_path))
    assert _all(store) == written
    store.close()


COMPACTION_BODY = """
    store = file_store.FileStore(path, compact_min_bytes=2048)
    for i in range(400):
        with store.begin(write=True) as txn:
            txn.put(b"key%04d" % (i % 150), b"value %d" % i)
        print(i, flush=True)  # acknowledged
    store.wait_for_compaction()
    store.close()
    print("finished", flush=True)
"""

COMPACTION_STEPS = [
    "switch: journal renamed",
    "switch: new journal created",
    "writing the snapshot",
    "compaction: snapshot written",
    "compaction: snapshot renamed",
    "compaction: snapshot durable",
    "compaction: segments removed",
]


@pytest.mark.parametrize("step", COMPACTION_STEPS)
def test_a_crash_at_each_point_of_a_compaction_loses_nothing(tmp_path: Path, step: str) -> None:
    FileStore(str(tmp_path)).close()
    done = _child(COMPACTION_BODY, str(tmp_path), step)
    assert done.returncode == 3, done.stdout[-500:] + done.stderr
    acknowledged = [int(line) for line in done.stdout.split()]
    expected = {}
    for i in acknowledged:
        expected[b"key%04d" % (i % 150)] = b"value %d" % i

    def check(store: FileStore) -> None:
        data = _all(store)
        for key, value in expected.items():
            # the last acknowledged write, or one that was written but not yet acknowledged
            assert data[key] in (value, b"value %d" % (int(value.split()[1]) + 150)), key

    reader = FileStore(str(tmp_path), readonly=True)
    check(reader)
    reader.close()
    store = FileStore(str(tmp_path), compact_min_bytes=2048)
    check(store)
    for i in range(400, 800):  # and compactions work again
        _put(store, {b"key%04d" % (i % 150): b"value %d" % i})
    store.wait_for_compaction()
    assert store.stats()["compactions"] >= 1
    store.close()
    store = FileStore(str(tmp_path))
    assert _all(store) == {b"key%04d" % (i % 150): b"value %d" % i for i in range(650, 800)}
    assert not [p for p in tmp_path.iterdir() if file_store.TMP_MARK in p.name]
    store.close()


def test_a_compaction_that_fails_leaves_the_segments_and_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = file_compaction.write_snapshot
    failures = [OSError(28, "No space left on device")]

    def failing_once(fd: int, *args) -> None:  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        real(fd, *args)

    store = FileStore(str(tmp_path), sync=False, compact_min_bytes=2048)
    monkeypatch.setattr(file_compaction, "write_snapshot", failing_once)
    i = 0
    while failures:
        _put(store, {b"key%04d" % (i % 50): b"v" * 40})
        i += 1
    store.wait_for_compaction()
    assert store.stats()["compactions"] == 0
    assert list(tmp_path.glob("journal-*"))  # kept: the snapshot does not cover them
    reopened = FileStore(str(tmp_path), readonly=True)
    assert _all(reopened) == _all(store)
    reopened.close()
    while store.stats()["compactions"] == 0:
        _put(store, {b"key%04d" % (i % 50): b"v" * 40})
        i += 1
        store.wait_for_compaction()
    assert not list(tmp_path.glob("journal-*"))
    store.close()
