"""External channel (domains.md section 7): bindings, ingress with idempotency, receipts, the
durable inbox, delivery events, reply publishing and the durable outbox."""

from __future__ import annotations

from typing import Any


def collections() -> list[Any]:
    """The index-layer collections of this domain (for tools and the consistency check)."""
    from domains.channel.repository import COLLECTIONS

    return list(COLLECTIONS)


def ttl_spaces() -> list[Any]:
    """The TTL spaces (idempotency keys) whose expired keys the sweeper purges."""
    from domains.channel.repository import TTL_SPACES

    return list(TTL_SPACES)
