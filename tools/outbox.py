"""``autobyteus-store outbox``: the channel outbox's two operations (domains.md 7.9) on a stopped
server's store, the same as the HTTP routes ``GET /rest/api/channel-outbox`` and ``POST
/rest/api/channel-outbox/{id}/retry`` offer while it runs.

    autobyteus-store outbox list  [--status S] [--limit N] [--cursor C]   newest first, JSON Lines
    autobyteus-store outbox retry ID                                      a dead letter -> PENDING

``list`` reads (read-only; it does not block a running server) and writes one entry per line on
stdout, the counts per state and the next page's cursor on stderr. ``retry`` writes: stop the
server first (its worker would not be woken; the file backend's lock refuses a second writer).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tools.common import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, Location, ToolError

DESCRIPTION = (
    "List the channel outbox's entries newest first (one JSON object per line on stdout: "
    "status, attempts, nextAttemptAt, lastError, envelope), or put a DEAD_LETTER entry back to "
    "PENDING with a fresh attempt budget (its delivery event back to PENDING). retry writes: "
    "stop the server first. retry exits 2 for an id that does not exist and 1 for an entry "
    "that is not DEAD_LETTER."
)


def add_arguments(p: argparse.ArgumentParser, store_options: Any) -> None:
    actions = p.add_subparsers(dest="outbox_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="entries newest first, as JSON Lines")
    store_options(listing)
    listing.add_argument("--status", metavar="STATUS",
                         help="PENDING, DISPATCHING, SENT, FAILED_RETRY or DEAD_LETTER")
    listing.add_argument("--limit", type=int, default=100, metavar="N",
                         help="entries per page, 1..1000 (default 100)")
    listing.add_argument("--cursor", metavar="CURSOR",
                         help="the next page's cursor, as the previous page reported it")
    retry = actions.add_parser("retry", help="put a DEAD_LETTER entry back to PENDING")
    retry.add_argument("entry_id", metavar="ID", help="the outbox entry's id")
    store_options(retry)


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def run(args: argparse.Namespace, location: Location) -> int:
    # Imported here: the other commands work on raw stores even when a domain does not import.
    from domains.channel import codec
    from domains.channel.commands import OUTBOX_STATUS
    from domains.channel.service import ChannelService
    from domains.errors import ConflictError, NotFoundError, ValidationError

    readonly = args.outbox_action == "list"
    store = location.open(readonly=readonly, create=False)
    try:
        service = ChannelService(store)
        if args.outbox_action == "list":
            try:
                status = None if args.status in (None, "") else \
                    OUTBOX_STATUS.check(args.status, "status")
                page = service.list_outbox(status=status, limit=args.limit, cursor=args.cursor)
            except ValidationError as exc:
                raise ToolError(f"--{exc.field}: {exc.detail}", EXIT_USAGE) from None
            for entry in page.items:
                sys.stdout.write(json.dumps(codec.outbox_entry_json(entry),
                                            ensure_ascii=False) + "\n")
            counts = service.outbox_summary().counts
            _say("outbox: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
            if page.next_cursor is not None:
                _say(f"outbox: more entries: --cursor {page.next_cursor}")
            return EXIT_OK
        try:
            entry = service.retry_dead_letter(args.entry_id)
        except NotFoundError as exc:
            raise ToolError(exc.detail, EXIT_USAGE) from None
        except ConflictError as exc:
            raise ToolError(exc.detail, EXIT_PROBLEMS) from None
        sys.stdout.write(json.dumps(codec.outbox_entry_json(entry), ensure_ascii=False) + "\n")
        _say(f"outbox: entry {entry.id} is PENDING again (a fresh budget of attempts)")
        return EXIT_OK
    finally:
        store.close()
