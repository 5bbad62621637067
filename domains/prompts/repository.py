"""Prompts on the engine's index layer.

Key layout (tuples packed by engine.keys, under the collection ``prompts``)::

    ("c", "prompts", "r", id)                                         -> codec bytes
    ("c", "prompts", "u", "family_version", name, category, models, version) -> id (unique)
    ("c", "prompts", "o", "by_family", name, category, models, version, id)  family lookups:
        highest version of a family, "any prompt of (name, category)", all versions of it
    ("c", "prompts", "o", "listing", category, name, -version, id)    the list order
    ("c", "prompts", "o", "active", category, name, -version, id)     active prompts only:
        the family's active prompt, resolution, categories, the isActive=true list
    ("q", "prompts")                                                  the id sequence

``listing`` and ``active`` share one order (category asc, name asc, version desc, then id), so
a list filtered on ``isActive=true`` walks only the active entries. Long str elements are
clipped by the index layer (prefix + digest); lookups compare the full values of the records
they load, so a clip never makes two values equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from domains.common import decode_cursor, encode_cursor
from domains.errors import ValidationError
from domains.prompts import codec
from domains.prompts.models import Prompt
from engine import MAX_KEY_SIZE, Transaction
from engine.indexes import Collection, OrderedIndex, UniqueIndex
from engine.keys import id_element, pack, unpack

#: Ids come from sequences (decimal strings); a longer "id" names nothing and would not fit a key.
MAX_ID_LENGTH = 64


def _family_version(p: Prompt) -> tuple[str, str, str, int]:
    return (p.name, p.category, p.suitable_for_models, p.version)


PROMPTS = Collection(
    "prompts",
    codec.from_bytes,
    unique=[UniqueIndex("family_version", _family_version)],
    ordered=[
        OrderedIndex("by_family", _family_version),
        OrderedIndex("listing", lambda p: (p.category, p.name, -p.version)),
        OrderedIndex("active", lambda p: (p.category, p.name, -p.version) if p.is_active else None),
    ],
)


# -- pages over an ordered index (shared by the definition and team repositories) --------------
def _cursor_key(coll: Collection, index: str, cursor: str | None) -> bytes | None:
    """The index key a cursor stands for: the cursor holds the key's elements after the index
    name (JSON: strings and ints), packed again here."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    if not isinstance(position, list) or not all(
        v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
        for v in position
    ):
        raise ValidationError("cursor is not one this list issued", field="cursor")
    try:
        key = coll.ordered_prefix + pack((index, *position))
    except (TypeError, ValueError):
        key = b""
    if not key or len(key) > MAX_KEY_SIZE:
        raise ValidationError("cursor is not one this list issued", field="cursor")
    return key


def _cursor_of(coll: Collection, index: str, key: bytes) -> str:
    base = coll.ordered_prefix + pack((index,))
    return encode_cursor(list(unpack(key[len(base):])))


def index_page(
    txn: Transaction,
    coll: Collection,
    index: str,
    *,
    limit: int,
    cursor: str | None,
    prefix: Any = (),
    predicate: Callable[[Any], bool] | None = None,
) -> tuple[list[Any], str | None]:
    """One page of decoded records in the order of ordered index ``index``, and its cursor.

    The cursor is the index key of the page's last item (its elements, via encode_cursor), so the
    next page starts right after it even if records were added or removed meanwhile; every
    record present throughout the walk is seen exactly once. ``predicate`` filters records; the
    scan reads the index in chunks, and the cursor is issued only when another match exists, so
    the last page never comes back empty.
    """
    after = _cursor_key(coll, index, cursor)
    chunk = limit + 1 if predicate is None else max(64, limit + 1)
    items: list[Any] = []
    last_key: bytes | None = None
    while True:
        hits = list(coll.query_keys(txn, index, prefix, after=after, limit=chunk))
        for key, rid in hits:
            record = coll.get_record(txn, rid)
            if record is None or (predicate is not None and not predicate(record)):
                continue
            if len(items) == limit:
                assert last_key is not None
                return items, _cursor_of(coll, index, last_key)
            items.append(record)
            last_key = key
        if len(hits) < chunk:
            return items, None
        after = hits[-1][0]


# -- prompts ------------------------------------------------------------------------------------
def get(txn: Transaction, prompt_id: str) -> Prompt | None:
    raw = get_bytes(txn, prompt_id)
    return None if raw is None else codec.from_bytes(raw)


def get_bytes(txn: Transaction, prompt_id: str) -> bytes | None:
    """The stored bytes of a prompt (decode with codec.from_bytes or codec.json_from_bytes)."""
    if not isinstance(prompt_id, str) or not 0 < len(prompt_id) <= MAX_ID_LENGTH:
        return None  # no such id can exist (and an overlong one is no key)
    return PROMPTS.get(txn, prompt_id)


def insert(txn: Transaction, prompt: Prompt) -> None:
    PROMPTS.insert(txn, prompt.id, codec.to_bytes(prompt), prompt)


def update(txn: Transaction, prompt: Prompt) -> None:
    PROMPTS.update(txn, prompt.id, codec.to_bytes(prompt), prompt)


def delete(txn: Transaction, prompt_id: str) -> bool:
    return PROMPTS.delete(txn, prompt_id)


def next_id(txn: Transaction) -> str:
    return PROMPTS.next_id(txn)


def _records(txn: Transaction, ids: list[str]) -> Iterator[Prompt]:
    for rid in ids:
        p = PROMPTS.get_record(txn, rid)
        if p is not None:
            yield p


def latest_in_family(txn: Transaction, family: tuple[str, str, str]) -> Prompt | None:
    """The prompt of the family with the highest version (one index key read)."""
    for p in _records(txn, PROMPTS.query(txn, "by_family", family, reverse=True, limit=1)):
        if p.family == family:
            return p
    return None


def of_name_category(txn: Transaction, name: str, category: str, *, limit: int | None = None
                     ) -> list[Prompt]:
    """Every prompt with exactly this name and category (any models, any version), ordered by
    suitableForModels then version."""
    ids = PROMPTS.query(txn, "by_family", (name, category), limit=limit)
    return [p for p in _records(txn, ids) if p.name == name and p.category == category]


def active_of(txn: Transaction, name: str, category: str) -> list[Prompt]:
    """The active prompts of (name, category), one per family, oldest id first."""
    found = [
        p for p in _records(txn, PROMPTS.query(txn, "active", (category, name)))
        if p.name == name and p.category == category and p.is_active
    ]
    return sorted(found, key=lambda p: _id_sort_key(p.id))


def active_in_family(txn: Transaction, family: tuple[str, str, str]) -> list[Prompt]:
    name, category, _models = family
    return [p for p in active_of(txn, name, category) if p.family == family]


def all_active(txn: Transaction) -> Iterator[Prompt]:
    for rid in PROMPTS.query(txn, "active"):
        p = PROMPTS.get_record(txn, rid)
        if p is not None and p.is_active:
            yield p


def _id_sort_key(record_id: str) -> tuple[int, int | str]:
    el = id_element(record_id)
    return (0, el) if isinstance(el, int) else (1, el)
