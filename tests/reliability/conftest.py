"""Reliability suites (issue 8): crash torture, injected faults, two servers on one PostgreSQL.

The default run keeps them short. ``RELIABILITY_LONG=1`` runs the long form (200 SIGKILLs per
provider, longer fault and concurrency runs); ``RELIABILITY_KILLS=N`` sets the kills alone.
"""

from __future__ import annotations

import os

LONG = os.environ.get("RELIABILITY_LONG", "") not in ("", "0", "false", "no")
KILLS = int(os.environ.get("RELIABILITY_KILLS") or (200 if LONG else 3))
