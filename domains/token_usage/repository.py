"""Token usage records on the engine's index layer, with hourly roll-ups for the statistics.

Key layout (tuples packed by engine.keys, collection ``token_usage``; ``ms`` is createdAt in
milliseconds since the epoch, ``id`` the record id as an int)::

    ("c", "token_usage", "r", id)                              -> codec bytes
    ("c", "token_usage", "o", "by_time", ms, id)               -> b""   records in a time range
    ("c", "token_usage", "o", "by_agent", agentId, ms, id)     -> b""   one agent run, by time
    ("c", "token_usage", "o", "by_model", llmModel|None, ms, id) -> b"" one model, by time; also
                                                                        first appearance of a model
    ("c", "token_usage", "s", "hourly", hour, group)  -> counters n, pt, pc, at, ac
    ("q", "token_usage")                                       -> the id sequence

``hour`` is ``ms // 3_600_000`` (UTC hours), ``group`` is llmModel or "unknown". The counters of
a bucket are the number of records ``n``, prompt tokens ``pt`` and cost ``pc`` (role user),
assistant tokens ``at`` and cost ``ac`` (role assistant); costs are integer nano-units, so sums
are exact. The index layer updates the bucket in the record's own transaction.

A statistic over [lo, hi] reads: the records of the partial hour at each end (through
``by_time``), the buckets of the whole hours in between, and, to order the groups by first
appearance, one ``by_model`` key per group (its first record in the first bucket where it
appears). Its cost grows with the hours and the groups in the range and the records of the two
edge hours, never with the number of records in the whole hours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from domains.common import decode_cursor, encode_cursor, to_millis
from domains.errors import ValidationError
from domains.token_usage import codec
from domains.token_usage.models import UNKNOWN_MODEL, USER, ModelStatistics, TokenUsageRecord
from engine import Transaction
from engine.indexes import Collection, OrderedIndex, Rollup
from engine.keys import id_element, pack, unpack

HOUR_MS = 3_600_000
BY_TIME = "by_time"
BY_AGENT = "by_agent"
BY_MODEL = "by_model"
HOURLY = "hourly"


def _ms(record: TokenUsageRecord) -> int:
    return to_millis(record.created_at)


def _counters(record: TokenUsageRecord) -> dict[str, int]:
    if record.role == USER:
        return {"n": 1, "pt": record.token_count, "pc": record.cost_nanos}
    return {"n": 1, "at": record.token_count, "ac": record.cost_nanos}


RECORDS = Collection(
    "token_usage",
    codec.from_bytes,
    ordered=[
        OrderedIndex(BY_TIME, lambda r: (_ms(r),)),
        OrderedIndex(BY_AGENT, lambda r: (r.agent_id, _ms(r))),
        OrderedIndex(BY_MODEL, lambda r: (r.llm_model, _ms(r))),
    ],
    rollups=[Rollup(HOURLY, lambda r: ((_ms(r) // HOUR_MS, r.group), _counters(r)))],
)


def next_id(txn: Transaction) -> str:
    return RECORDS.next_id(txn)


def insert(txn: Transaction, record: TokenUsageRecord) -> None:
    RECORDS.insert(txn, record.token_usage_record_id, codec.to_bytes(record), record)


def get(txn: Transaction, record_id: str) -> TokenUsageRecord | None:
    if not isinstance(record_id, str) or not record_id:
        return None
    return RECORDS.get_record(txn, record_id)


# -- pages --------------------------------------------------------------------------------------
def _after_key(index: str, cursor: str | None) -> bytes | None:
    """A cursor is ``[index, *key elements after the index name]`` of the page's last entry."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    if (
        not isinstance(position, list)
        or len(position) < 3
        or position[0] != index
        or not all(
            v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
            for v in position[1:]
        )
    ):
        raise ValidationError("cursor is not one this list issued", field="cursor")
    try:
        return RECORDS.ordered_prefix + pack(position)
    except (TypeError, ValueError):
        raise ValidationError("cursor is not one this list issued", field="cursor") from None


def _cursor_of(key: bytes) -> str:
    return encode_cursor(list(unpack(key[len(RECORDS.ordered_prefix):])))


def page(
    txn: Transaction,
    index: str,
    prefix: tuple[Any, ...],
    lo_ms: int | None,
    hi_ms: int | None,
    *,
    limit: int,
    cursor: str | None,
    predicate: Callable[[TokenUsageRecord], bool] | None = None,
) -> tuple[list[TokenUsageRecord], str | None]:
    """One page of the records of ``index`` under ``prefix`` with lo_ms <= ms <= hi_ms (None:
    unbounded), in (createdAt, id) order, and the next page's cursor (None: last page).

    Only index keys inside the range are read. ``predicate`` filters what the index cannot (an
    exact match after a clipped prefix, a second filter); the scan then reads in chunks, and a
    cursor is issued only when another match exists, so the last page is never empty.
    """
    after = _after_key(index, cursor)
    chunk = limit + 1 if predicate is None else max(64, limit + 1)
    start = None if lo_ms is None else (lo_ms,)
    end = None if hi_ms is None else (hi_ms,)
    items: list[TokenUsageRecord] = []
    last_key: bytes | None = None
    while True:
        hits = list(RECORDS.query_keys(
            txn, index, prefix, start=start, end=end, end_inclusive=True, after=after,
            limit=chunk,
        ))
        for key, rid in hits:
            record = RECORDS.get_record(txn, rid)
            if record is None or (predicate is not None and not predicate(record)):
                continue
            if len(items) == limit:
                assert last_key is not None
                return items, _cursor_of(last_key)
            items.append(record)
            last_key = key
        if len(hits) < chunk:
            return items, None
        after = hits[-1][0]


def in_range(txn: Transaction, lo_ms: int | None, hi_ms: int | None) -> Iterator[TokenUsageRecord]:
    """Every record with lo_ms <= ms <= hi_ms, in (createdAt, id) order (reads only those)."""
    start = None if lo_ms is None else (lo_ms,)
    end = None if hi_ms is None else (hi_ms,)
    for _, rid in RECORDS.query_keys(txn, BY_TIME, (), start=start, end=end, end_inclusive=True):
        record = RECORDS.get_record(txn, rid)
        if record is not None:
            yield record


# -- statistics ---------------------------------------------------------------------------------
class _Acc:
    __slots__ = ("n", "pt", "pc", "at", "ac", "first")

    def __init__(self) -> None:
        self.n = self.pt = self.pc = self.at = self.ac = 0
        #: (ms, id) of the group's first record in the range, once known.
        self.first: tuple[int, int | str] | None = None

    def add(self, counters: dict[str, int]) -> None:
        self.n += counters.get("n", 0)
        self.pt += counters.get("pt", 0)
        self.pc += counters.get("pc", 0)
        self.at += counters.get("at", 0)
        self.ac += counters.get("ac", 0)


def _first_in_hour(txn: Transaction, group: str, hour: int) -> tuple[int, int | str]:
    """(ms, id) of the group's first record at or after the start of ``hour`` (one index key
    per model the group stands for: "unknown" is both a missing model and the name itself)."""
    models: tuple[str | None, ...] = (None, UNKNOWN_MODEL) if group == UNKNOWN_MODEL else (group,)
    found: list[tuple[int, int | str]] = []
    for model in models:
        for key, _ in RECORDS.query_keys(
            txn, BY_MODEL, (model,), start=(hour * HOUR_MS,), end=((hour + 1) * HOUR_MS,),
            limit=1,
        ):
            parts = unpack(key)
            found.append((parts[-2], parts[-1]))  # type: ignore[arg-type]
    if not found:  # the bucket says the group has a record in this hour: the index disagrees
        return (hour * HOUR_MS, -1)
    return min(found, key=lambda p: (p[0], _id_order(p[1])))


def _id_order(id_el: int | str) -> tuple[int, int | str]:
    # Within one millisecond records sort by id element: ints before strs (as keys.pack does).
    return (0, id_el) if isinstance(id_el, int) else (1, id_el)  # type: ignore[return-value]


def _position(ms: int, record_id: str) -> tuple[int, int | str]:
    return (ms, id_element(record_id))


def aggregate(
    txn: Transaction, lo_ms: int | None, hi_ms: int | None, *, order: bool
) -> list[ModelStatistics]:
    """Per-group sums over lo_ms <= ms <= hi_ms (None: unbounded), from the hourly roll-ups
    plus the records of the partial hours at the ends. With ``order``, groups come in order of
    first appearance in time (else in any order: the total cost needs no order)."""
    groups: dict[str, _Acc] = {}

    def add_records(lo: int | None, hi: int | None) -> None:
        for record in in_range(txn, lo, hi):
            acc = groups.get(record.group)
            if acc is None:
                acc = groups[record.group] = _Acc()
            if acc.first is None:
                acc.first = _position(_ms(record), record.token_usage_record_id)
            acc.add(_counters(record))

    if lo_ms is not None and hi_ms is not None and lo_ms > hi_ms:
        return []
    # Whole hours inside the range: [full_lo, full_hi] (None: unbounded on that side).
    full_lo = None if lo_ms is None else -(-lo_ms // HOUR_MS)
    full_hi = None if hi_ms is None else (hi_ms + 1) // HOUR_MS - 1
    if full_lo is not None and full_hi is not None and full_lo > full_hi:
        add_records(lo_ms, hi_ms)  # no whole hour: the range lies within two partial hours
    else:
        if lo_ms is not None and full_lo is not None and lo_ms < full_lo * HOUR_MS:
            add_records(lo_ms, full_lo * HOUR_MS - 1)
        first_bucket: dict[str, int] = {}
        for (hour, group), counters in RECORDS.rollup_range(
            txn, HOURLY, start=None if full_lo is None else (full_lo,),
            end=None if full_hi is None else (full_hi,), end_inclusive=True,
        ):
            acc = groups.get(group)  # type: ignore[arg-type]
            if acc is None:
                acc = groups[group] = _Acc()  # type: ignore[index]
            if acc.first is None and group not in first_bucket:
                first_bucket[group] = hour  # type: ignore[index,assignment]
            acc.add(counters)
        if order:
            for group, hour in first_bucket.items():
                groups[group].first = _first_in_hour(txn, group, hour)
        if hi_ms is not None and full_hi is not None and hi_ms >= (full_hi + 1) * HOUR_MS:
            add_records((full_hi + 1) * HOUR_MS, hi_ms)
    items = list(groups.items())
    if order:
        items.sort(key=lambda kv: (kv[1].first[0], _id_order(kv[1].first[1])))  # type: ignore[index]
    return [
        ModelStatistics(
            llm_model=group, prompt_tokens=acc.pt, prompt_cost_nanos=acc.pc,
            assistant_tokens=acc.at, assistant_cost_nanos=acc.ac,
        )
        for group, acc in items
    ]
