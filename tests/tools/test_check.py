"""check: index consistency over the domain collections; exit 1 on problems; --repair."""

from __future__ import annotations

import json

from engine.indexes.definitions import ID_BLOCK
from engine.keys import pack
from tests.tools.helpers import ITEMS, fill, fill_domains, flags, tool
from tools.domainsupport import Discovery


def test_check_domains_and_repair(make_store, backend, capsys):
    loc = make_store.location(backend)
    store = make_store.open(backend, loc)
    filled = fill_domains(store)
    store.close()
    assert tool("check", *flags(backend, loc)) == 0
    if "prompts" not in filled:
        return  # the domains do not import yet: covered with index-layer data below
    store = make_store.open(backend, loc)
    with store.begin(write=True) as txn:  # break the prompts' unique index and listing
        claim = next(k for k, _ in txn.scan(prefix=pack(("c", "prompts", "u"))))
        txn.delete(claim)
        txn.put(pack(("c", "prompts", "o", "listing", "zz", "ghost", -1, 999)), b"")
    store.close()
    capsys.readouterr()
    assert tool("check", *flags(backend, loc), "--json") == 1
    report = json.loads(capsys.readouterr().out)
    kinds = {p["kind"] for p in report["problems"]}
    assert kinds == {"missing_entry", "dangling_entry"} and not report["ok"]
    assert tool("check", *flags(backend, loc), "--domain", "agent_teams") == 0
    assert tool("check", *flags(backend, loc), "--repair") == 0
    assert tool("check", *flags(backend, loc)) == 0


def test_check_on_index_layer_data(make_store, backend, monkeypatch, capsys):
    monkeypatch.setattr("tools.cli.discover", lambda: Discovery(collections=[ITEMS]))
    loc = make_store.location(backend)
    store = make_store.open(backend, loc)
    fill(store)
    with store.begin(write=True) as txn:
        shard = next(k for k, _ in txn.scan(prefix=pack(("c", "tool_items", "sh", "per_group",
                                                         "g1"))))
        txn.delete(shard)  # a roll-up shard lost
        # Past the sequence (and the block of ids reserved on postgresql); takes a taken name.
        txn.put(pack(("c", "tool_items", "r", ID_BLOCK + 50)),
                b'{"name": "item-1", "group": "g1", "n": 50, "amount": 1}')
    store.close()
    assert tool("check", *flags(backend, loc)) == 1
    out = capsys.readouterr().out
    assert "rollup_mismatch" in out and "sequence_behind" in out
    # The duplicate name cannot be repaired: it is left for a person, and reported.
    assert tool("check", *flags(backend, loc), "--repair") == 1
    err = capsys.readouterr().err
    assert "duplicate_unique" in err and "Traceback" not in err


def test_check_without_domains(make_store, monkeypatch, capsys):
    monkeypatch.setattr("tools.cli.discover", lambda: Discovery(failures={"x": "ImportError"}))
    loc = make_store.location("lmdb")
    make_store.open("lmdb", loc).close()
    assert tool("check", *flags("lmdb", loc)) == 2
    assert "no domain collections" in capsys.readouterr().err
