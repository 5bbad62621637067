"""The token usage codec: the one place where records become JSON or bytes (request bodies are
the shapes of domains/token_usage/commands.py).

The answers are declared here, each once, as a class whose fields are its JSON (camelCase, in
this order): a record is answered with its cost as a decimal number, ``cost``, where the stored
bytes keep the exact integer, ``{"v": 1, ..., "costNanos": n}``, so that the records and the
roll-ups built from them agree to the last unit.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from cattrs.gen import make_dict_unstructure_fn

from domains.codec_support import RecordFormatError as RecordFormatError
from domains.codec_support import (
    camel_renames,
    dump_envelope,
    load_envelope,
    make_converter,
    register_camel,
)
from domains.shapes import Choice, wire
from domains.token_usage.models import (
    ROLES,
    ModelStatistics,
    TokenUsageRecord,
    nanos_to_float,
)

FORMAT_VERSION = 1

converter = make_converter()
register_camel(converter, TokenUsageRecord)

_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


# -- answers --------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class TokenUsageAnswer:
    """A record as answered."""

    token_usage_record_id: str
    agent_id: str
    role: str = wire(Choice(ROLES))
    token_count: int
    cost: float
    llm_model: str | None
    created_at: _dt.datetime


@attrs.frozen(kw_only=True)
class ModelStatisticsAnswer:
    """The usage of one model group (llmModel, or "unknown" for records without one)."""

    llm_model: str
    prompt_tokens: int
    prompt_token_cost: float
    assistant_tokens: int
    assistant_token_cost: float
    total_cost: float


@attrs.frozen(kw_only=True)
class TotalCostAnswer:
    total_cost: float


def _unstructure(cls: type) -> Callable[[Any], dict[str, Any]]:
    return make_dict_unstructure_fn(cls, converter, **camel_renames(cls))


_record_json = _unstructure(TokenUsageAnswer)
_statistics_json = _unstructure(ModelStatisticsAnswer)
_total_json = _unstructure(TotalCostAnswer)


def to_json(record: TokenUsageRecord) -> dict[str, Any]:
    return _record_json(TokenUsageAnswer(
        token_usage_record_id=record.token_usage_record_id, agent_id=record.agent_id,
        role=record.role, token_count=record.token_count, cost=nanos_to_float(record.cost_nanos),
        llm_model=record.llm_model, created_at=record.created_at))


def records_to_json(records: Sequence[TokenUsageRecord]) -> list[dict[str, Any]]:
    return [to_json(r) for r in records]


def statistics_to_json(stats: ModelStatistics) -> dict[str, Any]:
    return _statistics_json(ModelStatisticsAnswer(
        llm_model=stats.llm_model, prompt_tokens=stats.prompt_tokens,
        prompt_token_cost=stats.prompt_token_cost, assistant_tokens=stats.assistant_tokens,
        assistant_token_cost=stats.assistant_token_cost, total_cost=stats.total_cost))


def total_cost_to_json(total: float) -> dict[str, Any]:
    return _total_json(TotalCostAnswer(total_cost=total))


# -- stored bytes -------------------------------------------------------------------------------
def to_bytes(record: TokenUsageRecord) -> bytes:
    return dump_envelope(converter.unstructure(record, TokenUsageRecord), FORMAT_VERSION)


def from_bytes(raw: bytes) -> TokenUsageRecord:
    doc = load_envelope(raw, "token usage record", FORMAT_VERSION, _UPGRADES)
    return converter.structure(doc, TokenUsageRecord)
