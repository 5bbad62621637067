"""load: dump -> load is byte-identical across every pair of providers; a damaged dump is refused
before any write; a non-empty target is refused without --force; indexes are rebuilt when the
dump does not carry them."""

from __future__ import annotations

import io
import json
import os
import sys

import pytest

from engine.indexes import check
from tests.conftest import ALL_PROVIDERS
from tests.tools.helpers import IDEM, ITEMS, contents, fill, flags, read_lines, tool
from tools.domainsupport import Discovery


@pytest.fixture
def full_dump(make_store, backend, tmp_path):
    loc = make_store.location(backend)
    store = make_store.open(backend, loc)
    fill(store)
    store.close()
    out = tmp_path / f"{backend}.jsonl"
    assert tool("dump", *flags(backend, loc), "--all", "-q", "-o", str(out)) == 0
    return loc, out


def test_round_trip_to_every_provider(make_store, backend, full_dump):
    loc, out = full_dump
    expected = contents(backend, loc)
    for target in ALL_PROVIDERS:
        tloc = make_store.location(target)
        assert tool("load", str(out), *flags(target, tloc), "--batch-size", "7") == 0, target
        assert contents(target, tloc) == expected, f"{backend} -> {target}"


def _ok_discovery(monkeypatch):
    monkeypatch.setattr(
        "tools.cli.discover", lambda: Discovery(collections=[ITEMS], complete=True)
    )


def test_default_dump_loads_and_rebuilds_indexes(make_store, backend, tmp_path, monkeypatch):
    _ok_discovery(monkeypatch)
    loc = make_store.location(backend)
    store = make_store.open(backend, loc)
    fill(store)
    store.close()
    out = tmp_path / "records.jsonl"
    assert tool("dump", *flags(backend, loc), "-q", "-o", str(out)) == 0  # no index entries
    assert not [x for x in read_lines(out)[1:-1] if x["kind"] in ("unique", "ordered")]
    tloc = make_store.location("lmdb")
    assert tool("load", str(out), *flags("lmdb", tloc)) == 0
    # Everything comes back identical except the expired TTL key the dump left out (and its
    # expiry entry): the indexes by repair, the TTL expiry index from the TTL keys.
    gone = IDEM._suffix("gone")
    source = [(k, v) for k, v in contents(backend, loc) if not k.endswith(gone)]
    assert contents("lmdb", tloc) == source
    target = make_store.open("lmdb", tloc)
    assert check(target, [ITEMS]).ok
    with target.begin() as txn:
        assert ITEMS.lookup(txn, "name", "item-5") == "5"
    assert IDEM.sweep(target, now=10**10) == 2  # "live" and the long key; "forever" never
    target.close()


def test_indexes_of_unknown_domains_are_reported(make_store, tmp_path, capsys):
    loc = make_store.location("file")
    store = make_store.open("file", loc)
    fill(store)
    store.close()
    out = tmp_path / "records.jsonl"
    assert tool("dump", *flags("file", loc), "-q", "-o", str(out)) == 0
    tloc = make_store.location("sqlite")
    assert tool("load", str(out), *flags("sqlite", tloc)) == 1
    assert "tool_items were not rebuilt" in capsys.readouterr().err
    target = make_store.open("sqlite", tloc)
    assert not check(target, [ITEMS]).ok  # records without their index entries
    target.close()
    assert tool("check", *flags("sqlite", tloc)) in (0, 1)  # the real domains: nothing of theirs


def _damage(path, how):
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    if how == "no footer":
        return b"".join(lines[:-1])
    if how == "cut mid-line":
        return data[: len(data) - len(lines[-1]) - 7]
    if how == "cut mid-footer":
        return data[:-5]
    if how == "line removed":
        return b"".join(lines[:3] + lines[4:])
    if how == "value altered":
        i = next(i for i, x in enumerate(lines) if b"item-3" in x)
        lines[i] = lines[i].replace(b"item-3", b"item-X")
        return b"".join(lines)
    if how == "header altered":
        lines[0] = lines[0].replace(b'"indexes":true', b'"indexes":false')
        return b"".join(lines)
    if how == "footer count":
        lines[-1] = json.dumps({"footer": {**json.loads(lines[-1])["footer"], "count": 1}}
                               ).encode() + b"\n"
        return b"".join(lines)
    if how == "line after footer":
        return data + lines[1]
    if how == "not a dump":
        return b"hello\n"
    if how == "empty":
        return b""
    raise AssertionError(how)


DAMAGES = ["no footer", "cut mid-line", "cut mid-footer", "line removed", "value altered",
           "header altered", "footer count", "line after footer", "not a dump", "empty"]


def test_damaged_dumps_are_refused_before_any_write(make_store, tmp_path, capsys):
    loc = make_store.location("lmdb")
    store = make_store.open("lmdb", loc)
    fill(store)
    store.close()
    good = tmp_path / "good.jsonl"
    assert tool("dump", *flags("lmdb", loc), "--all", "-q", "-o", str(good)) == 0
    for provider in ("lmdb", "sqlite", "file"):
        tloc = make_store.location(provider)
        for how in DAMAGES:
            bad = tmp_path / "bad.jsonl"
            bad.write_bytes(_damage(good, how))
            assert tool("load", str(bad), *flags(provider, tloc)) == 5, how
            err = capsys.readouterr().err
            assert "refusing the dump" in err and "Traceback" not in err
            assert not os.path.exists(os.path.join(tloc["data_dir"], provider)), how
    # postgresql: the target database is not touched either
    tloc = make_store.location("postgresql")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_damage(good, "value altered"))
    assert tool("load", str(bad), *flags("postgresql", tloc)) == 5
    assert tool("dump", *flags("postgresql", tloc)) == 3  # no store was created


def test_non_empty_target_and_force(make_store, tmp_path, full_dump, backend, capsys):
    loc, out = full_dump
    tloc = make_store.location(backend)
    target = make_store.open(backend, tloc)
    with target.begin(write=True) as txn:
        txn.put(b"already here", b"1")
    target.close()
    assert tool("load", str(out), *flags(backend, tloc)) == 6
    assert "not empty" in capsys.readouterr().err
    assert contents(backend, tloc) == [(b"already here", b"1")]
    assert tool("load", str(out), *flags(backend, tloc), "--force") == 0
    assert contents(backend, tloc) == contents(backend, loc)


def test_load_from_stdin_and_missing_file(make_store, tmp_path, monkeypatch, full_dump, backend):
    loc, out = full_dump
    tloc = make_store.location("file")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(out.read_bytes())))
    assert tool("load", "-", *flags("file", tloc)) == 0
    assert contents("file", tloc) == contents(backend, loc)
    assert tool("load", str(tmp_path / "nope.jsonl"), *flags("file", tloc)) == 2
