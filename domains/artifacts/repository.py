"""Agent artifacts on the engine's index layer.

Key layout (tuples packed by engine.keys, collection ``artifacts``; ``ms`` is createdAt in
milliseconds since the epoch)::

    ("c", "artifacts", "r", id)                              -> codec bytes
    ("c", "artifacts", "o", "by_agent", agentId, ms, id)     -> b""  one run's artifacts by time
    ("q", "artifacts")                                       -> the id sequence

A list reads only the keys of its agent run (an agentId over 128 bytes is clipped by the index
layer to a prefix plus digest; records are still compared by their full agentId).
"""

from __future__ import annotations

from domains.artifacts import codec
from domains.artifacts.models import Artifact
from domains.common import decode_cursor, encode_cursor, to_millis
from domains.errors import ValidationError
from engine import Transaction
from engine.indexes import Collection, OrderedIndex
from engine.keys import pack, unpack

BY_AGENT = "by_agent"

ARTIFACTS = Collection(
    "artifacts",
    codec.from_bytes,
    ordered=[OrderedIndex(BY_AGENT, lambda a: (a.agent_id, to_millis(a.created_at)))],
)


def next_id(txn: Transaction) -> str:
    return ARTIFACTS.next_id(txn)


def insert(txn: Transaction, artifact: Artifact) -> None:
    ARTIFACTS.insert(txn, artifact.id, codec.to_bytes(artifact), artifact)


def get(txn: Transaction, artifact_id: str) -> Artifact | None:
    if not isinstance(artifact_id, str) or not artifact_id:
        return None
    return ARTIFACTS.get_record(txn, artifact_id)


def _after_key(cursor: str | None) -> bytes | None:
    """A cursor is the key elements (after the index name) of the page's last entry."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    if not isinstance(position, list) or len(position) != 3 or not isinstance(position[0], str) \
            or not all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in position):
        raise ValidationError("cursor is not one this list issued", field="cursor")
    return ARTIFACTS.ordered_prefix + pack((BY_AGENT, *position))


def page_of_agent(
    txn: Transaction, agent_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Artifact], str | None]:
    """One page of the run's artifacts by (createdAt, id), and the next page's cursor."""
    after = _after_key(cursor)
    base = len(ARTIFACTS.ordered_prefix + pack((BY_AGENT,)))
    items: list[Artifact] = []
    last_key: bytes | None = None
    chunk = limit + 1
    while True:
        hits = list(ARTIFACTS.query_keys(txn, BY_AGENT, (agent_id,), after=after, limit=chunk))
        for key, rid in hits:
            artifact = ARTIFACTS.get_record(txn, rid)
            if artifact is None or artifact.agent_id != agent_id:
                continue
            if len(items) == limit:
                assert last_key is not None
                return items, encode_cursor(list(unpack(last_key[base:])))
            items.append(artifact)
            last_key = key
        if len(hits) < chunk:
            return items, None
        after = hits[-1][0]
