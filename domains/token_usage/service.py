"""The rules of token usage (domains.md section 5).

Records are append-only; createdAt is the server's clock at insert (millisecond precision). A
conversation turn is two records written in one transaction. Range queries take [start, end],
inclusive at both ends, as aware datetimes (or ISO/``YYYY-MM-DD`` text); None leaves that side
unbounded. Statistics and the total cost come from the hourly roll-ups (see repository).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from domains.common import (
    Clock,
    Page,
    check_limit,
    parse_timestamp,
    to_millis,
    utc_now,
)
from domains.errors import NotFoundError, ValidationError
from domains.token_usage import codec, repository
from domains.token_usage.models import (
    ASSISTANT,
    USER,
    ModelStatistics,
    TokenUsageRecord,
    nanos_to_float,
)
from engine import Store, Transaction
from engine.indexes import transact

_MS = _dt.timedelta(milliseconds=1)


def _bound(value: Any, field: str) -> _dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return parse_timestamp(value, field)
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=_dt.UTC)
    raise ValidationError(f"{field} must be a timestamp", field=field)


def _range_ms(start: Any, end: Any) -> tuple[int | None, int | None]:
    """[start, end] as inclusive millisecond bounds: records are stored to the millisecond, so
    a start with sub-millisecond digits rounds up and an end rounds down."""
    lo = _bound(start, "start")
    hi = _bound(end, "end")
    lo_ms = None if lo is None else -(-(lo - _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)) // _MS)
    hi_ms = None if hi is None else to_millis(hi)
    return lo_ms, hi_ms


def _optional_filter(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field=field)
    return value


class TokenUsageService:
    def __init__(self, store: Store, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock

    def _now(self) -> _dt.datetime:
        now = self.clock()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    @staticmethod
    def _new(txn: Transaction, now: _dt.datetime, **fields: Any) -> TokenUsageRecord:
        record = TokenUsageRecord(
            token_usage_record_id=repository.next_id(txn), created_at=now, **fields
        )
        repository.insert(txn, record)
        return record

    # -- writes -----------------------------------------------------------------------------------
    def record(self, payload: Any) -> TokenUsageRecord:
        """One record ``{agentId, role, tokenCount, cost?, llmModel?}``."""
        fields = codec.parse_record(payload)
        return transact(self.store, lambda txn: self._new(txn, self._now(), **fields))

    create = record

    def record_conversation(self, payload: Any) -> tuple[TokenUsageRecord, TokenUsageRecord]:
        """A conversation turn: the user record and the assistant record, in one transaction
        (same createdAt; the user record has the lower id, so it sorts first)."""
        f = codec.parse_conversation(payload)

        def go(txn: Transaction) -> tuple[TokenUsageRecord, TokenUsageRecord]:
            now = self._now()
            user = self._new(
                txn, now, agent_id=f["agent_id"], role=USER, token_count=f["prompt_tokens"],
                cost_nanos=f["prompt_cost_nanos"], llm_model=f["llm_model"],
            )
            assistant = self._new(
                txn, now, agent_id=f["agent_id"], role=ASSISTANT,
                token_count=f["completion_tokens"], cost_nanos=f["completion_cost_nanos"],
                llm_model=f["llm_model"],
            )
            return user, assistant

        return transact(self.store, go)

    # -- reads ------------------------------------------------------------------------------------
    def get(self, record_id: str) -> TokenUsageRecord:
        with self.store.begin() as txn:
            record = repository.get(txn, record_id)
        if record is None:
            raise NotFoundError(f"token usage record {record_id} does not exist", field="id")
        return record

    def list(
        self,
        start: Any = None,
        end: Any = None,
        *,
        llm_model: Any = None,
        agent_id: Any = None,
        limit: Any = None,
        cursor: str | None = None,
    ) -> Page[TokenUsageRecord]:
        """Records with start <= createdAt <= end, by (createdAt, id); optionally of one model
        and/or one agent run. Reads only index keys inside the range."""
        n = check_limit(limit)
        lo_ms, hi_ms = _range_ms(start, end)
        model = _optional_filter(llm_model, "llmModel")
        agent = _optional_filter(agent_id, "agentId")
        if lo_ms is not None and hi_ms is not None and lo_ms > hi_ms:
            return Page([], None)
        if agent is not None:
            index, prefix = repository.BY_AGENT, (agent,)

            def predicate(r: TokenUsageRecord) -> bool:
                return r.agent_id == agent and (model is None or r.llm_model == model)
        elif model is not None:
            index, prefix = repository.BY_MODEL, (model,)

            def predicate(r: TokenUsageRecord) -> bool:
                return r.llm_model == model
        else:
            index, prefix, predicate = repository.BY_TIME, (), None  # type: ignore[assignment]
        with self.store.begin() as txn:
            items, next_cursor = repository.page(
                txn, index, prefix, lo_ms, hi_ms, limit=n, cursor=cursor, predicate=predicate
            )
        return Page(items, next_cursor)

    list_records = list

    def records_of_agent(
        self, agent_id: str, *, limit: Any = None, cursor: str | None = None
    ) -> Page[TokenUsageRecord]:
        """The records of one agent run, by time."""
        if not isinstance(agent_id, str) or not agent_id:
            raise ValidationError("agentId is required", field="agentId")
        return self.list(agent_id=agent_id, limit=limit, cursor=cursor)

    def statistics(self, start: Any = None, end: Any = None) -> list[ModelStatistics]:
        """Per model group (llmModel or "unknown"), ordered by first appearance in time."""
        lo_ms, hi_ms = _range_ms(start, end)
        with self.store.begin() as txn:
            return repository.aggregate(txn, lo_ms, hi_ms, order=True)

    def total_cost_nanos(self, start: Any = None, end: Any = None) -> int:
        lo_ms, hi_ms = _range_ms(start, end)
        with self.store.begin() as txn:
            groups = repository.aggregate(txn, lo_ms, hi_ms, order=False)
        return sum(g.total_cost_nanos for g in groups)

    def total_cost(self, start: Any = None, end: Any = None) -> float:
        return nanos_to_float(self.total_cost_nanos(start, end))
