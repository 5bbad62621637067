"""scripts/powerfs.py keeps exactly what POSIX promises across a simulated power cut: a file's data
once the file is fsynced (or written through O_DSYNC), a name once its directory is fsynced, and
a torn last write cut at a 512-byte boundary. Each test mounts it, writes through the real kernel
FUSE path, cuts, remounts the image and reads what survived."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.powerloss import PowerRig, fuse_missing

pytestmark = pytest.mark.skipif(fuse_missing() is not None,
                                reason=f"the power-loss rig needs FUSE: {fuse_missing()}")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[PowerRig]:
    rig = PowerRig(str(tmp_path), print)
    rig.up()
    try:
        yield rig
    finally:
        if rig.proc is not None:
            rig.down(None)


def _write(path: str, data: bytes, *, sync: bool, flags: int = 0) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _power_cycle(rig: PowerRig, **up: object) -> None:
    rig.down(None)
    rig.up(**up)  # type: ignore[arg-type]


def test_only_synced_data_under_synced_names_survives(rig: PowerRig) -> None:
    m = rig.mountpoint
    _write(f"{m}/kept", b"synced", sync=True)
    _write(f"{m}/unsynced-data", b"lost", sync=False)
    _write(f"{m}/dsync", b"", sync=False)
    _sync_dir(m)
    _write(f"{m}/kept", b" and not synced", sync=False, flags=os.O_APPEND)
    _write(f"{m}/dsync", b"written through O_DSYNC", sync=False, flags=os.O_DSYNC)
    _write(f"{m}/unsynced-name", b"data synced, name not", sync=True)
    os.mkdir(f"{m}/d")  # the root is not synced again: d is lost with all under it
    _write(f"{m}/d/f", b"x", sync=True)
    _sync_dir(f"{m}/d")
    assert sorted(os.listdir(m)) == ["d", "dsync", "kept", "unsynced-data", "unsynced-name"]
    _power_cycle(rig)
    assert sorted(os.listdir(m)) == ["dsync", "kept", "unsynced-data"]
    assert Path(f"{m}/kept").read_bytes() == b"synced"
    assert Path(f"{m}/unsynced-data").read_bytes() == b""
    assert Path(f"{m}/dsync").read_bytes() == b"written through O_DSYNC"


def test_a_rename_is_durable_only_with_its_directory(rig: PowerRig) -> None:
    m = rig.mountpoint
    _write(f"{m}/snapshot", b"old", sync=True)
    _sync_dir(m)
    _write(f"{m}/snapshot.tmp-1", b"new", sync=True)
    os.replace(f"{m}/snapshot.tmp-1", f"{m}/snapshot")
    assert Path(f"{m}/snapshot").read_bytes() == b"new"
    _power_cycle(rig)
    assert os.listdir(m) == ["snapshot"] and Path(f"{m}/snapshot").read_bytes() == b"old"
    _write(f"{m}/snapshot.tmp-2", b"newer", sync=True)
    os.replace(f"{m}/snapshot.tmp-2", f"{m}/snapshot")
    _sync_dir(m)
    _power_cycle(rig)
    assert os.listdir(m) == ["snapshot"] and Path(f"{m}/snapshot").read_bytes() == b"newer"


def test_a_torn_write_keeps_whole_sectors_of_its_start(rig: PowerRig) -> None:
    """100 synced bytes, then 2,000 appended and not synced: a cut keeps 0, 412, 924, 1,436 or
    1,948 of them (up to a 512-byte boundary of the file), never a part of a sector."""
    m = rig.mountpoint
    lengths = set()
    for seed in range(4):  # fixed seeds: the same tears every run
        _power_cycle(rig, tear=True, seed=seed)
        _write(f"{m}/journal", b"a" * 100, sync=True, flags=os.O_TRUNC)
        _sync_dir(m)
        _write(f"{m}/journal", b"b" * 2000, sync=False, flags=os.O_APPEND)
        _power_cycle(rig)
        data = Path(f"{m}/journal").read_bytes()
        assert data[:100] == b"a" * 100
        assert data[100:] == b"b" * (len(data) - 100)
        assert len(data) in (100, 512, 1024, 1536, 2048), len(data)
        lengths.add(len(data))
    assert len(lengths) > 1, lengths
