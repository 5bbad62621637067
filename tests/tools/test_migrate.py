"""migrate: a store with every domain filled moves to another provider and reads back identical."""

from __future__ import annotations

import pytest

from engine import open_store
from engine.indexes import check
from tests.conftest import ALL_PROVIDERS
from tests.tools.helpers import ITEMS, contents, fill, fill_domains, flags, target_flags, tool
from tools.domainsupport import discover


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_migrate_every_domain(make_store, backend, shift):
    loc = make_store.location(backend)
    store = make_store.open(backend, loc)
    filled = fill_domains(store)
    store.close()
    target = ALL_PROVIDERS[(ALL_PROVIDERS.index(backend) + shift) % 4]
    tloc = make_store.location(target)
    assert tool("migrate", *flags(backend, loc), *target_flags(target, tloc),
                "--batch-size", "10") == 0
    assert contents(target, tloc) == contents(backend, loc)
    moved = open_store(target, **tloc, readonly=True, create=False)
    try:
        cols = discover().collections
        report = check(moved, [*cols, ITEMS])
        assert report.ok, str(report)
        assert report.records["tool_items"] == 11
        assert len(filled) == 7
        assert report.records["prompts"] == 4
        assert report.records["agent_definitions"] == 3
        assert report.records["agent_team_definitions"] == 1
        assert report.records["token_usage"] == 3
        assert report.records["artifacts"] == 1
        for name, count in report.records.items():
            if name.startswith("channel"):
                assert count >= 1, (name, count)
    finally:
        moved.close()


def test_migrate_refusals_and_force(make_store, tmp_path, capsys, monkeypatch):
    loc = make_store.location("lmdb")
    store = make_store.open("lmdb", loc)
    fill(store)
    store.close()
    assert tool("migrate", "--from", "lmdb", "--from-data-dir", loc["data_dir"],
                "--to", "lmdb", "--to-data-dir", loc["data_dir"]) == 2  # the same store
    tloc = make_store.location("sqlite")
    other = make_store.open("sqlite", tloc)
    with other.begin(write=True) as txn:
        txn.put(b"x", b"y")
    other.close()
    args = [*flags("lmdb", loc), *target_flags("sqlite", tloc)]
    assert tool("migrate", *args) == 6
    assert contents("sqlite", tloc) == [(b"x", b"y")]
    assert tool("migrate", *args, "--force") == 0
    assert contents("sqlite", tloc) == contents("lmdb", loc)
    # A copy that reads back different is reported, not trusted.
    import tools.cli as cli

    real = cli._write_batches

    def lossy(store, pairs, *a, **kw):
        return real(store, ((k, v) for k, v in pairs if k != b"big"), *a, **kw)

    monkeypatch.setattr(cli, "_write_batches", lossy)
    assert tool("migrate", *args, "--force") == 8
    assert "verification failed" in capsys.readouterr().err
    assert tool("migrate", "--provider", "file", "--data-dir", str(tmp_path / "no"),
                *target_flags("sqlite", tloc), "--force") == 3
