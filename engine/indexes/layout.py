"""The index layer's key layout, and the classification of a raw key by it (the tools' view).

Key layout (every key is a tuple packed by :mod:`engine.keys`; ``id`` is the id element, an int
for decimal ids)::

    ("c", coll, "r", id)                       -> record bytes, as given by the caller
    ("c", coll, "u", index, *values)           -> pack((id,))             unique claim
    ("c", coll, "uh", index, sha256(values))   -> pack((id, values, ...)) bucket of long claims
    ("c", coll, "o", index, *values, id)       -> b""                     ordered entry
    ("c", coll, "sh", rollup, *bucket, shard)  -> pack((field, n, ...))   roll-up counters, one
                                                                          shard of the bucket
    ("c", coll, "s", rollup, *bucket)          -> pack((field, n, ...))   a whole bucket, as
                                                  written before 2026-12: read, never written
    ("q", sequence)                            -> pack((last,))           sequence counter: the
                                                  highest id given out or reserved in a block
    ("t", space, "k", key) | ("t", space, "h", sha256(key))  -> pack((expires_us, key))
    ("t", space, "x", expires_us, "k"|"h", key|digest)       -> b""       expiry index

A bucket's value is the sum of its shards (and of its pre-shard key): a record counts in shard
``id % 16`` (on every backend), so that concurrent writes rarely meet on one key. A collection's
sequence is named after the collection. Counters and expiry times are ints (microseconds for
times), so totals are exact; see :func:`~engine.indexes.definitions.to_micros` for float
amounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.interface import Transaction
from engine.keys import END, pack, unpack

NS_COLLECTION = "c"
NS_SEQUENCE = "q"
NS_TTL = "t"
#: Every namespace of the layout: a domain's keys are ``(ns, name, ...)`` for one of them.
NAMESPACES = (NS_COLLECTION, NS_SEQUENCE, NS_TTL)
#: The part of a TTL space that holds its expiry index.
TTL_EXPIRY = "x"


def ttl_expiry_key(space_prefix: bytes, expires_us: int, suffix: bytes) -> bytes:
    """The expiry entry of the TTL key ``space_prefix + suffix`` that expires at ``expires_us``
    (``space_prefix`` is ``pack((NS_TTL, space))``)."""
    return space_prefix + pack((TTL_EXPIRY, expires_us)) + suffix


def ttl_expiry_of(key: bytes, space: str, expires_us: int) -> bytes:
    """The expiry entry that belongs with ``key``, a TTL key of ``space``."""
    space_prefix = pack((NS_TTL, space))
    return ttl_expiry_key(space_prefix, expires_us, key[len(space_prefix) :])


def names_in(txn: Transaction, namespace: str) -> list[str]:
    """The names (collections, sequences or TTL spaces) that have keys in ``namespace``, in key
    order: one short scan per name, skipping from one name to the next however many keys each
    holds. Keys that are not packed tuples with a str name are stepped over."""
    found: list[str] = []
    base = pack((namespace,))
    start = base
    while True:
        hit = next(iter(txn.scan(start, base + END, limit=1)), None)
        if hit is None:
            return found
        try:
            parts = unpack(hit[0])
        except (ValueError, IndexError):
            parts = ()
        if len(parts) < 2 or not isinstance(parts[1], str):
            start = hit[0] + b"\x00"
            continue
        found.append(parts[1])
        start = pack((namespace, parts[1])) + END


#: Kinds of keys that are derived data: rebuilt from the records by indexes.repair (TTL expiry
#: entries are derived from the TTL keys). Sequences are not derived: a sequence may be ahead of
#: every surviving id (the highest record was deleted), and ids are never reused.
INDEX_KINDS = frozenset({"unique", "ordered", "rollup", "ttl_expiry"})

_COLLECTION_PARTS = {
    "r": "record", "u": "unique", "uh": "unique", "o": "ordered", "s": "rollup", "sh": "rollup",
}


@dataclass(frozen=True)
class KeyInfo:
    """What a key is, in the index layer's layout."""

    kind: str  # record, unique, ordered, rollup, sequence, ttl, ttl_expiry, other
    domain: str | None  # the collection, sequence or TTL space name
    parts: tuple[Any, ...] | None  # the decoded tuple (None: not a packed tuple)
    record_id: str | None = None
    expires_us: int | None = None  # TTL keys and expiry entries (0: never expires)

    @property
    def is_index(self) -> bool:
        return self.kind in INDEX_KINDS

    def expired(self, now_us: int) -> bool:
        """A TTL key (or its expiry entry) past its expiry: TtlSpace treats it as absent."""
        return bool(self.expires_us) and self.expires_us <= now_us  # type: ignore[operator]


def kind_of(parts: tuple[Any, ...]) -> str:
    """The kind of a decoded key, as :func:`classify` finds it (which also reads the value)."""
    if len(parts) >= 3 and isinstance(parts[1], str):
        ns, sub = parts[0], parts[2]
        if ns == NS_COLLECTION and sub in _COLLECTION_PARTS:
            return _COLLECTION_PARTS[sub]  # type: ignore[index]
        if ns == NS_TTL and sub in ("k", "h"):
            return "ttl"
        if ns == NS_TTL and sub == TTL_EXPIRY and len(parts) >= 4 and isinstance(parts[3], int):
            return "ttl_expiry"
    if len(parts) == 2 and parts[0] == NS_SEQUENCE and isinstance(parts[1], str):
        return "sequence"
    return "other"


def classify(key: bytes, value: bytes) -> KeyInfo:
    """What ``key`` (with its ``value``) is in the layout above; "other" if it fits none."""
    try:
        parts = unpack(key)
    except (ValueError, IndexError):
        return KeyInfo("other", None, None)
    if len(parts) >= 3 and isinstance(parts[1], str):
        ns, name, sub = parts[0], parts[1], parts[2]
        if ns == NS_COLLECTION and sub in _COLLECTION_PARTS:
            kind = _COLLECTION_PARTS[sub]  # type: ignore[index]
            rid = None
            if kind == "record" and len(parts) == 4 and isinstance(parts[3], (int, str)):
                rid = str(parts[3])
            return KeyInfo(kind, name, parts, rid)
        if ns == NS_TTL and sub in ("k", "h"):
            expires = None
            try:
                first = unpack(value)[0]
                if isinstance(first, int):
                    expires = first
            except (ValueError, IndexError):
                pass
            return KeyInfo("ttl", name, parts, expires_us=expires)
        if ns == NS_TTL and sub == TTL_EXPIRY and len(parts) >= 4 and isinstance(parts[3], int):
            return KeyInfo("ttl_expiry", name, parts, expires_us=parts[3])
    if len(parts) == 2 and parts[0] == NS_SEQUENCE and isinstance(parts[1], str):
        return KeyInfo("sequence", parts[1], parts)
    return KeyInfo("other", parts[1] if len(parts) > 1 and isinstance(parts[1], str) else None,
                   parts)
