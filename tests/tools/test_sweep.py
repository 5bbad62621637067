"""sweep: the TTL sweeper, callable from the tools, on every backend."""

from __future__ import annotations

import json
import time

from engine.indexes import TtlSpace
from tests.tools.helpers import flags, tool


def test_sweep_purges_only_expired_keys(make_store, backend, capsys):
    loc = make_store.location(backend)
    store = make_store.open(backend, loc)
    ingress, replies = TtlSpace("ingress"), TtlSpace("replies")
    now = time.time()
    with store.begin(write=True) as txn:
        for i in range(300):  # more than one batch
            assert ingress.reserve(txn, f"old{i}", 10, now=now - 100)
        assert ingress.reserve(txn, "live", 3600, now=now)
        assert ingress.reserve(txn, "forever", 0, now=now - 10_000)
        assert replies.reserve(txn, "old", 1, now=now - 50)
    store.close()
    capsys.readouterr()
    assert tool("sweep", *flags(backend, loc), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"purged": 301, "spaces": ["ingress", "replies"]}
    store = make_store.open(backend, loc)
    with store.begin(write=True) as txn:
        assert ingress.reserve(txn, "old0", 10) is True  # purged: first seen again
        assert ingress.reserve(txn, "live", 10) is False
        assert ingress.reserve(txn, "forever", 10) is False
    store.close()
    assert tool("sweep", *flags(backend, loc), "--space", "replies", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"purged": 0, "spaces": ["replies"]}
