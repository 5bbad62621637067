"""The rules of token usage (domains.md section 5).

Records are append-only; createdAt is the server's clock at insert (millisecond precision). A
conversation turn is two records written in one transaction. Range queries take [start, end],
inclusive at both ends, as datetimes (a naive one is UTC; the web layer reads the query text
with commands.BOUND); None leaves that side unbounded. Statistics and the total cost come from
the hourly roll-ups (see repository).
"""

from __future__ import annotations

import builtins
import datetime as _dt
from collections.abc import Callable

from domains.common import Clock, Limit, Page, check_limit, to_millis, utc_now
from domains.errors import NotFoundError, ValidationError
from domains.token_usage import repository
from domains.token_usage.commands import RecordConversation, RecordUsage
from domains.token_usage.models import (
    ASSISTANT,
    USER,
    ModelStatistics,
    TokenUsageRecord,
    cost_to_nanos,
    nanos_to_float,
)
from engine import Store, Transaction
from engine.indexes import transact

_MS = _dt.timedelta(milliseconds=1)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def _aware(ts: _dt.datetime) -> _dt.datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=_dt.UTC)


def _range_ms(
    start: _dt.datetime | None, end: _dt.datetime | None
) -> tuple[int | None, int | None]:
    """[start, end] as inclusive millisecond bounds (a naive bound is UTC): records are stored
    to the millisecond, so a start with sub-millisecond digits rounds up and an end rounds
    down."""
    lo_ms = None if start is None else -(-(_aware(start) - _EPOCH) // _MS)
    hi_ms = None if end is None else to_millis(_aware(end))
    return lo_ms, hi_ms


class TokenUsageService:
    def __init__(self, store: Store, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock

    def _now(self) -> _dt.datetime:
        now = self.clock()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    @staticmethod
    def _new(txn: Transaction, now: _dt.datetime, *, agent_id: str, role: str, token_count: int,
             cost_nanos: int, llm_model: str | None) -> TokenUsageRecord:
        record = TokenUsageRecord(
            token_usage_record_id=repository.next_id(txn), agent_id=agent_id, role=role,
            token_count=token_count, cost_nanos=cost_nanos, llm_model=llm_model, created_at=now)
        repository.insert(txn, record)
        return record

    # -- writes -----------------------------------------------------------------------------------
    def record(self, command: RecordUsage) -> TokenUsageRecord:
        """One record."""
        cost_nanos = cost_to_nanos(command.cost)
        return transact(self.store, lambda txn: self._new(
            txn, self._now(), agent_id=command.agent_id, role=command.role,
            token_count=command.token_count, cost_nanos=cost_nanos,
            llm_model=command.llm_model))

    create = record

    def record_conversation(
        self, command: RecordConversation
    ) -> tuple[TokenUsageRecord, TokenUsageRecord]:
        """A conversation turn: the user record and the assistant record, in one transaction
        (same createdAt; the user record has the lower id, so it sorts first)."""
        prompt_nanos = cost_to_nanos(command.prompt_cost)
        completion_nanos = cost_to_nanos(command.completion_cost)

        def go(txn: Transaction) -> tuple[TokenUsageRecord, TokenUsageRecord]:
            now = self._now()
            user = self._new(
                txn, now, agent_id=command.agent_id, role=USER,
                token_count=command.prompt_tokens, cost_nanos=prompt_nanos,
                llm_model=command.llm_model,
            )
            assistant = self._new(
                txn, now, agent_id=command.agent_id, role=ASSISTANT,
                token_count=command.completion_tokens, cost_nanos=completion_nanos,
                llm_model=command.llm_model,
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
        start: _dt.datetime | None = None,
        end: _dt.datetime | None = None,
        *,
        llm_model: str | None = None,
        agent_id: str | None = None,
        limit: Limit = None,
        cursor: str | None = None,
    ) -> Page[TokenUsageRecord]:
        """Records with start <= createdAt <= end, by (createdAt, id); optionally of one model
        and/or one agent run. Reads only index keys inside the range."""
        n = check_limit(limit)
        lo_ms, hi_ms = _range_ms(start, end)
        if lo_ms is not None and hi_ms is not None and lo_ms > hi_ms:
            return Page([], None)
        index, prefix, predicate = self._walk(llm_model or None, agent_id or None)
        with self.store.begin() as txn:
            items, next_cursor = repository.page(
                txn, index, prefix, lo_ms, hi_ms, limit=n, cursor=cursor, predicate=predicate
            )
        return Page(items, next_cursor)

    @staticmethod
    def _walk(
        model: str | None, agent: str | None
    ) -> tuple[str, tuple[str, ...], Callable[[TokenUsageRecord], bool] | None]:
        """The index a list walks, its prefix, and what the index cannot filter exactly."""
        if agent is not None:
            return (repository.BY_AGENT, (agent,),
                    lambda r: r.agent_id == agent and (model is None or r.llm_model == model))
        if model is not None:
            return repository.BY_MODEL, (model,), lambda r: r.llm_model == model
        return repository.BY_TIME, (), None

    list_records = list

    def records_of_agent(
        self, agent_id: str, *, limit: Limit = None, cursor: str | None = None
    ) -> Page[TokenUsageRecord]:
        """The records of one agent run, by time."""
        if not agent_id:
            raise ValidationError("agentId is required", field="agentId")
        return self.list(agent_id=agent_id, limit=limit, cursor=cursor)

    def statistics(
        self, start: _dt.datetime | None = None, end: _dt.datetime | None = None
    ) -> builtins.list[ModelStatistics]:
        """Per model group (llmModel or "unknown"), ordered by first appearance in time."""
        lo_ms, hi_ms = _range_ms(start, end)
        with self.store.begin() as txn:
            return repository.aggregate(txn, lo_ms, hi_ms, order=True)

    def total_cost_nanos(
        self, start: _dt.datetime | None = None, end: _dt.datetime | None = None
    ) -> int:
        lo_ms, hi_ms = _range_ms(start, end)
        with self.store.begin() as txn:
            groups = repository.aggregate(txn, lo_ms, hi_ms, order=False)
        return sum(g.total_cost_nanos for g in groups)

    def total_cost(
        self, start: _dt.datetime | None = None, end: _dt.datetime | None = None
    ) -> float:
        return nanos_to_float(self.total_cost_nanos(start, end))
