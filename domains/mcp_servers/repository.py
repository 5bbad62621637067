"""MCP server configurations on the engine's index layer.

Key layout (tuples packed by engine.keys, collection ``mcp_servers``; the record id is the
serverId itself, so the upsert needs no lookup index)::

    ("c", "mcp_servers", "r", serverId*)                      -> codec bytes
    ("c", "mcp_servers", "o", "by_server_id", serverId, serverId*)   -> b""  the list order
    ("c", "mcp_servers", "o", "enabled", serverId, serverId*)        -> b""  enabled ones only

``serverId*`` is the record-id element (a canonical decimal serverId is stored as an int, as
for every collection). The list walks ``by_server_id``, whose str element orders serverIds by
code point ("10" before "9", as a string sort would); serverIds are at most 128 bytes, so the
index never clips them and the order is exact. ``enabled`` lets startup read the enabled
configurations without reading the disabled ones.
"""

from __future__ import annotations

from domains.common import decode_cursor, encode_cursor
from domains.errors import ValidationError
from domains.mcp_servers import codec
from domains.mcp_servers.models import McpServer
from engine import Transaction
from engine.indexes import Collection, OrderedIndex
from engine.keys import id_element, pack

SERVERS = Collection(
    "mcp_servers",
    codec.from_bytes,
    ordered=[
        OrderedIndex("by_server_id", lambda s: (s.server_id,)),
        OrderedIndex("enabled", lambda s: (s.server_id,) if s.enabled else None),
    ],
)


def get(txn: Transaction, server_id: str) -> McpServer | None:
    if not isinstance(server_id, str) or not server_id:
        return None
    return SERVERS.get_record(txn, server_id)


def put(txn: Transaction, server: McpServer) -> bool:
    """Insert or replace; True if created."""
    return SERVERS.put(txn, server.server_id, codec.to_bytes(server), server)


def delete(txn: Transaction, server_id: str) -> bool:
    return SERVERS.delete(txn, server_id)


def _after_key(index: str, cursor: str | None) -> bytes | None:
    position = decode_cursor(cursor)
    if position is None:
        return None
    if not isinstance(position, str) or not position:
        raise ValidationError("cursor is not one this list issued", field="cursor")
    return SERVERS.ordered_prefix + pack((index, position, id_element(position)))


def page(
    txn: Transaction, *, limit: int, cursor: str | None, index: str = "by_server_id"
) -> tuple[list[McpServer], str | None]:
    """One page in serverId order; the cursor is the last serverId of the page."""
    hits = list(SERVERS.query_keys(txn, index, after=_after_key(index, cursor), limit=limit + 1))
    more = len(hits) > limit
    items = [s for _, rid in hits[:limit] if (s := SERVERS.get_record(txn, rid)) is not None]
    next_cursor = encode_cursor(hits[limit - 1][1]) if more else None
    return items, next_cursor


def enabled(txn: Transaction) -> list[McpServer]:
    return [s for rid in SERVERS.query(txn, "enabled") if (s := SERVERS.get_record(txn, rid))]
