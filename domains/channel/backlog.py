"""The reply outbox's backlog, for operators: entries per state and the oldest one still waiting.

Read in one read transaction from the outbox's status index. SENT entries are history, not
backlog, and are not counted (there is one per reply ever delivered).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from domains.channel.models import DEAD_LETTER, DISPATCHING, FAILED_RETRY, OUTBOX_PENDING
from domains.channel.repository import OUTBOX
from engine import Store

#: States of a reply not yet delivered (its age counts), and those counted as backlog.
WAITING_STATES = (OUTBOX_PENDING, DISPATCHING, FAILED_RETRY)
BACKLOG_STATES = (*WAITING_STATES, DEAD_LETTER)
#: Counting stops here, so that a scrape stays cheap whatever happened.
COUNT_CAP = 100_000


def outbox_backlog(store: Store, now: _dt.datetime | None = None) -> dict[str, Any]:
    """``{"depth": {state: entries}, "oldest_pending_age_s": seconds}`` (0.0: nothing waits)."""
    now = now or _dt.datetime.now(_dt.UTC)
    depth: dict[str, int] = {}
    oldest: _dt.datetime | None = None
    with store.begin() as txn:
        for state in BACKLOG_STATES:
            ids = [rid for _, rid in OUTBOX.query_keys(txn, "status", (state,),
                                                       limit=COUNT_CAP)]
            depth[state] = len(ids)
            if state not in WAITING_STATES:
                continue
            # The index orders ids as strings, not by age: look at each waiting entry (the
            # backlog of a healthy server is a handful of replies).
            for rid in ids:
                entry = OUTBOX.get_record(txn, rid)
                if entry is not None and (oldest is None or entry.created_at < oldest):
                    oldest = entry.created_at
    age = 0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0)
    return {"depth": depth, "oldest_pending_age_s": age}
