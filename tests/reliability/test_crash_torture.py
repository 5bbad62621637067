"""SIGKILL the real server (``python -m web``, 2 worker processes; ``file``: one) at random moments
under writes to every domain, restart it, and find every acknowledged write, no half-done change,
a clean index check and every reply held or delivered (scripts/torture.py does the work; see its
documentation). A single worker is also killed alone, in the first round and then in about half.

Default run: a few kills per provider. Long form: ``RELIABILITY_LONG=1 python -m pytest
tests/reliability`` (200 per provider) or ``python -m scripts.torture --kills 200``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from scripts.torture import torture
from tests.conftest import ALL_PROVIDERS
from tests.reliability.conftest import KILLS, LONG


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_sigkill_loses_nothing_acknowledged(provider: str, tmp_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    url = None
    if provider == "postgresql":
        cluster: Any = request.getfixturevalue("pg_cluster")
        url = cluster.create_database(f"torture_{os.getpid()}_{provider}")
    seed = int(os.environ["RELIABILITY_SEED"]) if os.environ.get("RELIABILITY_SEED") else None
    stats = torture(provider, KILLS, workdir=str(tmp_path), database_url=url, seed=seed,
                    max_run_s=1.5 if LONG else 0.6, deliver_timeout=60 if LONG else 3,
                    require_delivery=LONG, workers=2, log=print)
    assert stats.kills == KILLS
    assert stats.workers == (1 if provider == "file" else 2)
    if provider != "file" and stats.rounds:
        assert stats.worker_kills >= 1
    assert stats.writes_acknowledged > 0 and stats.verified > 0
    assert not stats.problems
