"""stats: keys, bytes and TTL entries per domain on every backend; LMDB's map and readers."""

from __future__ import annotations

import json

from tests.tools.helpers import contents, fill, flags, sequence_after_fill, tool


def test_stats_json_and_table(make_store, backend, capsys):
    loc = make_store.location(backend)
    store = make_store.open(backend, loc)
    fill(store)
    store.close()
    capsys.readouterr()
    assert tool("stats", *flags(backend, loc), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    pairs = contents(backend, loc)
    assert report["provider"] == backend and report["keys"] == len(pairs)
    assert report["bytes"] == sum(len(k) + len(v) for k, v in pairs)
    items = report["domains"]["tool_items"]
    assert items["records"] == 11 and items["index_entries"] > 11
    assert items["sequence"] == sequence_after_fill(backend)
    idem = report["domains"]["tool_idem"]
    assert (idem["ttl_live"], idem["ttl_expired"]) == (3, 1)  # live, forever, long; gone
    assert idem["index_entries"] == 3  # expiry entries: gone, live, long (forever has none)
    assert report["domains"]["(other)"]["other_keys"] == 5
    assert report["backend"]["provider"] == backend
    if backend == "lmdb":
        b = report["backend"]
        assert 0 < b["map_use"] < 1 and b["pages"]["leaf"] >= 1 and b["readers"]["max"] > 0
    assert tool("stats", *flags(backend, loc)) == 0
    table = capsys.readouterr().out
    assert "tool_items" in table and "ttl expired" in table and "backend:" in table
    if backend == "lmdb":
        assert "map_use" in table and "readers.slots_used" in table


def test_stats_missing_store(tmp_path):
    assert tool("stats", "--provider", "file", "--data-dir", str(tmp_path)) == 3
