"""dump: one consistent snapshot as JSON Lines, on every backend; filters, views, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.tools.helpers import (
    WRITER,
    check_snapshot,
    contents,
    fill,
    flags,
    read_lines,
    sequence_after_fill,
    tool,
)
from tools import dumpfile
from tools.common import decode_bytes
from tools.dump import main as dump_main

ROOT = Path(__file__).resolve().parents[2]


def _filled(make_store, backend):
    loc = make_store.location(backend)
    store = make_store.open(backend, loc)
    fill(store)
    store.close()
    return loc


def test_dump_decoded_view_hides_indexes_and_expired(make_store, backend, tmp_path):
    loc = _filled(make_store, backend)
    out = tmp_path / "d.jsonl"
    assert tool("dump", *flags(backend, loc), "-o", str(out)) == 0
    lines = read_lines(out)
    header, body, footer = lines[0], lines[1:-1], lines[-1]
    assert header["format"] == "autobyteus-dump" and header["provider"] == backend
    assert header["indexes"] is False and header["complete"] is False
    assert footer["footer"]["count"] == len(body)
    kinds = {line["kind"] for line in body}
    assert kinds == {"record", "sequence", "ttl", "other"}
    records = [line for line in body if line["kind"] == "record"]
    assert len(records) == 11 and all(r["domain"] == "tool_items" for r in records)
    assert records[0]["tuple"] == ["c", "tool_items", "r", 1] and records[0]["id"] == "1"
    assert records[0]["json"]["name"] == "item-1"
    ttl = {line["tuple"][3] if isinstance(line["tuple"][3], str) else "hashed": line
           for line in body if line["kind"] == "ttl"}
    assert set(ttl) == {"live", "forever", "hashed"}  # "gone" expired: hidden
    assert ttl["forever"]["expires_at"] == "never"
    seq = [line for line in body if line["kind"] == "sequence"]
    assert seq[0]["value_tuple"] == [sequence_after_fill(backend)]
    # The exact bytes are in every line, whatever the view.
    store_pairs = dict(contents(backend, loc))
    for line in body:
        key = decode_bytes(line["key"])
        assert store_pairs[key] == decode_bytes(line["value"])
    with open(out, "rb") as f:
        assert dumpfile.verify(f).count == len(body)


def test_dump_all_is_the_whole_store_raw(make_store, backend, tmp_path):
    loc = _filled(make_store, backend)
    out = tmp_path / "d.jsonl"
    assert dump_main([*flags(backend, loc), "--all", "--raw", "-o", str(out), "-q"]) == 0
    lines = read_lines(out)
    assert lines[0]["complete"] is True and lines[0]["view"] == "raw"
    body = lines[1:-1]
    assert all(set(line) == {"key", "value"} for line in body)
    got = [(decode_bytes(x["key"]), decode_bytes(x["value"])) for x in body]
    assert got == contents(backend, loc)


def test_dump_filters(make_store, tmp_path):
    loc = _filled(make_store, "lmdb")
    f = flags("lmdb", loc)
    out = tmp_path / "d.jsonl"

    def body(*extra):
        assert tool("dump", *f, "-o", str(out), "-q", *extra) == 0
        return read_lines(out)[1:-1]

    assert {x["domain"] for x in body("--domain", "tool_items")} == {"tool_items"}
    assert {x["kind"] for x in body("--domain", "tool_items")} == {"record", "sequence"}
    assert {x["kind"] for x in body("--domain", "tool_items", "--include-indexes")} == {
        "record", "sequence", "unique", "ordered", "rollup"}
    idem = body("--domain", "tool_idem", "--all")
    assert {x["kind"] for x in idem} == {"ttl", "ttl_expiry"} and len(idem) == 4 + 3
    rec = body("--prefix", '["c","tool_items","r"]')
    assert [x["id"] for x in rec] == [str(i) for i in range(1, 12)]
    one = body("--key", '["c","tool_items","r",3]', "--key", "raw:big", "--key", "hex:ff00fe")
    assert [x["key"] for x in one][1:] == [
        "big", {"base64": "/wD+"}] and one[0]["id"] == "3"
    assert body("--domain", "tool_items", "--prefix", '["t"]') == []  # filters are AND-ed
    assert body("--key", "") and body("--key", "")[0]["value"] == "the empty key"


def test_dump_reads_the_environment(make_store, tmp_path, monkeypatch, capsysbinary):
    loc = _filled(make_store, "sqlite")
    monkeypatch.setenv("PERSISTENCE_PROVIDER", "sqlite")
    monkeypatch.setenv("AUTOBYTEUS_DATA_DIR", loc["data_dir"])
    assert dump_main(["--raw"]) == 0
    out, err = capsysbinary.readouterr()
    lines = out.splitlines()
    assert json.loads(lines[0])["provider"] == "sqlite"
    assert b"dump:" in err and b"sha256" in err
    # A flag wins over the variable: there is no lmdb store in that directory.
    assert dump_main(["--provider", "lmdb"]) == 3


def test_dump_errors(make_store, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AUTOBYTEUS_DATABASE_URL", raising=False)
    missing = str(tmp_path / "nothing")
    for provider in ("lmdb", "file", "sqlite"):
        assert tool("dump", "--provider", provider, "--data-dir", missing) == 3
        assert not os.path.exists(os.path.join(missing, provider, "data.mdb"))
    assert tool("dump", "--provider", "nosuch", "--data-dir", missing) == 2
    assert tool("dump", "--provider", "postgresql") == 2
    assert tool("dump", "--data-dir", missing, "--key", '["c", 1.5]') == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "--provider/PERSISTENCE_PROVIDER='nosuch' is not accepted; it accepts lmdb, file" in err
    # LMDB forbids a second open of one environment in a process: reported as locked.
    loc = make_store.location("lmdb")
    store = make_store.open("lmdb", loc)
    try:
        assert tool("dump", *flags("lmdb", loc)) == 4
    finally:
        store.close()
    assert "locked" in capsys.readouterr().err


def test_postgresql_missing_store(make_store):
    loc = make_store.location("postgresql")  # a fresh database without the store's tables
    assert tool("dump", *flags("postgresql", loc)) == 3


# -- a dump while another process writes ------------------------------------------------------
def _check_snapshot(path) -> int:
    with open(path, "rb") as f:
        dumpfile.verify(f)  # count and checksum
        return check_snapshot(list(dumpfile.pairs(f)))


def test_dump_while_another_process_writes(make_store, backend, tmp_path):
    loc = make_store.location(backend)
    make_store.open(backend, loc).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, backend, json.dumps(loc)], cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        seen = []
        for i in range(2):
            out = tmp_path / f"live{i}.jsonl"
            assert tool("dump", *flags(backend, loc), "--raw", "-q", "-o", str(out)) == 0
            seen.append(_check_snapshot(out))
            time.sleep(0.2)
        proc.stdin.close()
        total = int(proc.stdout.readline())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    assert 30 <= seen[0] < seen[1] <= total  # the writer went on during and between the dumps

