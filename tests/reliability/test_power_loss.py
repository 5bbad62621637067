"""Power loss: the real server on scripts/powerfs.py, a FUSE filesystem that drops at a simulated
power cut whatever was not fsynced (a file's data) or whose directory was not fsynced (creates,
renames, unlinks), tearing the last unsynced write in half the cuts. scripts/powerloss.py does the
work (see its documentation); its checks are torture.py's: every acknowledged write found after
every later restart, nothing half-applied, the index check clean, the store opening by itself.

Default run: a few cuts per local backend. Long form: ``RELIABILITY_LONG=1 python -m pytest
tests/reliability/test_power_loss.py`` (100 per backend) or ``python -m scripts.powerloss
--cuts 100``; ``RELIABILITY_POWER_CUTS=N`` sets the number alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scripts.powerloss import PROVIDERS, fuse_missing, powerloss
from scripts.torture import Violation
from tests.reliability.conftest import LONG

CUTS = int(os.environ.get("RELIABILITY_POWER_CUTS") or (100 if LONG else 3))
SEED = int(os.environ["RELIABILITY_SEED"]) if os.environ.get("RELIABILITY_SEED") else None

pytestmark = pytest.mark.skipif(fuse_missing() is not None,
                                reason=f"the power-loss rig needs FUSE: {fuse_missing()}")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_power_cuts_lose_nothing_acknowledged(provider: str, tmp_path: Path) -> None:
    stats = powerloss(provider, CUTS, workdir=str(tmp_path), seed=SEED,
                      max_run_s=1.0 if LONG else 0.5, log=print, verbose=True)
    assert sum(stats.cuts.values()) == CUTS
    assert stats.writes_acknowledged > 0 and stats.verified > 0
    assert not stats.problems


def test_the_rig_catches_a_file_backend_without_its_directory_fsync(tmp_path: Path) -> None:
    """The same rig, the file backend's directory fsync made a no-op: a compaction's renames are
    then never durable, so the writes acknowledged into the new journal vanish at the next cut.
    The seed is fixed so that the run is the same every time; any seed loses data here."""
    with pytest.raises(Violation) as caught:
        powerloss("file", 8, workdir=str(tmp_path), seed=17, max_run_s=1.0,
                  no_dir_fsync=True, compact_min_bytes=8 << 10, log=print, verbose=True)
    assert "acknowledged" in str(caught.value)
