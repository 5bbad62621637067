"""The key layout seen from outside (what the tools use): every key the index layer writes is
classified as what it is, the TTL expiry entry derived from a TTL key is the one TtlSpace writes,
and the names present in each namespace are found."""

from __future__ import annotations

import json

from engine import Store
from engine.indexes import (
    Collection,
    OrderedIndex,
    Rollup,
    TtlSpace,
    UniqueIndex,
    transact,
)
from engine.indexes.layout import (
    NS_COLLECTION,
    NS_SEQUENCE,
    NS_TTL,
    classify,
    names_in,
    ttl_expiry_of,
)
from engine.keys import pack

LONG = "x" * 600  # longer than TtlSpace.KEY_LIMIT: kept under its digest


def _records() -> Collection:
    return Collection(
        "things",
        json.loads,
        unique=[UniqueIndex("name", lambda r: r["name"])],
        ordered=[OrderedIndex("by_t", lambda r: r["t"])],
        rollups=[Rollup("per_group", lambda r: ((r["group"],), {"count": 1}))],
    )


def _fill(store: Store) -> None:
    things = _records()

    def go(txn):  # type: ignore[no-untyped-def]
        for t in (1, 2):
            rid = things.next_id(txn)
            things.insert(txn, rid, json.dumps({"name": f"n{t}", "t": t, "group": "g"}).encode())
        for key in ("short", LONG):
            TtlSpace("seen").reserve(txn, key, 60)
        TtlSpace("forever").reserve(txn, "k", 0)

    transact(store, go)


def test_every_key_the_index_layer_writes_is_classified(store: Store) -> None:
    _fill(store)
    with store.begin() as txn:
        pairs = list(txn.scan())
    kinds: dict[str, int] = {}
    for k, v in pairs:
        info = classify(k, v)
        kinds[info.kind] = kinds.get(info.kind, 0) + 1
        assert info.kind != "other", (k, v)
        assert info.is_index == (info.kind in {"unique", "ordered", "rollup", "ttl_expiry"})
        if info.kind == "record":
            assert info.domain == "things" and info.record_id in {"1", "2"}
        if info.kind in ("ttl", "ttl_expiry"):
            assert info.domain in {"seen", "forever"}
            assert info.expires_us is not None
    # One roll-up shard per record (ids 1 and 2); a TTL of 0 has no expiry entry.
    assert kinds == {"record": 2, "unique": 2, "ordered": 2, "rollup": 2, "sequence": 1,
                     "ttl": 3, "ttl_expiry": 2}
    assert classify(b"\xfe not a packed tuple", b"").kind == "other"


def test_the_expiry_entry_derived_from_a_ttl_key_is_the_one_ttlspace_wrote(store: Store) -> None:
    _fill(store)
    with store.begin() as txn:
        pairs = list(txn.scan())
    written = {k for k, v in pairs if classify(k, v).kind == "ttl_expiry"}
    derived = set()
    for k, v in pairs:
        info = classify(k, v)
        if info.kind == "ttl" and info.expires_us:
            assert info.domain is not None
            derived.add(ttl_expiry_of(k, info.domain, info.expires_us))
    assert derived == written and len(written) == 2


def test_names_in_each_namespace(store: Store) -> None:
    _fill(store)
    with store.begin(write=True) as txn:
        txn.put(pack((NS_COLLECTION,)) + b"\x00junk", b"")  # not a name: stepped over
        txn.put(pack((NS_COLLECTION, "zebra", "r", 1)), b"{}")
    with store.begin() as txn:
        assert names_in(txn, NS_COLLECTION) == ["things", "zebra"]
        assert names_in(txn, NS_SEQUENCE) == ["things"]
        assert names_in(txn, NS_TTL) == ["forever", "seen"]
        assert names_in(txn, "nothing here") == []
