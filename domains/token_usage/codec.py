"""The token usage codec: the one place where records become JSON or bytes, and where request
bodies are checked and parsed.

JSON: ``{tokenUsageRecordId, agentId, role, tokenCount, cost, llmModel, createdAt}`` with the
cost as a float. Stored bytes keep the exact integer cost instead, ``{"v": 1, ..., "costNanos":
n}``, so the records and the roll-ups built from them agree to the last unit.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from domains.codec_support import RecordFormatError as RecordFormatError
from domains.codec_support import (
    camel,
    dump_envelope,
    load_envelope,
    make_converter,
)
from domains.common import (
    optional_text,
    reject_unknown_fields,
    require_object,
    required_text,
)
from domains.errors import ValidationError
from domains.token_usage.models import (
    NANOS,
    ROLES,
    ModelStatistics,
    TokenUsageRecord,
    nanos_to_float,
)

FORMAT_VERSION = 1

#: llmModel is an element of roll-up keys (never clipped, so that the statistics can name the
#: model): bounded so that every key fits the engine's key limit.
MAX_MODEL_BYTES = 200
#: agentId is an element of index keys (clipped beyond 128 bytes, still exact by digest).
MAX_AGENT_ID_BYTES = 255
#: A sanity bound on one record's cost and token count.
MAX_COST = 1e12
MAX_TOKENS = 2**53




converter = make_converter()
_renames = {a.name: override(rename=camel(a.name)) for a in attrs.fields(TokenUsageRecord)}
converter.register_unstructure_hook(
    TokenUsageRecord, make_dict_unstructure_fn(TokenUsageRecord, converter, **_renames)
)
converter.register_structure_hook(
    TokenUsageRecord, make_dict_structure_fn(TokenUsageRecord, converter, **_renames)
)

_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


# -- records ------------------------------------------------------------------------------------
def to_json(record: TokenUsageRecord) -> dict[str, Any]:
    doc = converter.unstructure(record, TokenUsageRecord)
    nanos = doc.pop("costNanos")
    created = doc.pop("createdAt")
    llm_model = doc.pop("llmModel")
    doc["cost"] = nanos_to_float(nanos)
    doc["llmModel"] = llm_model
    doc["createdAt"] = created
    return doc


def records_to_json(records: list[TokenUsageRecord] | tuple[TokenUsageRecord, ...]) -> list[dict]:
    return [to_json(r) for r in records]


def statistics_to_json(stats: ModelStatistics) -> dict[str, Any]:
    return {
        "llmModel": stats.llm_model,
        "promptTokens": stats.prompt_tokens,
        "promptTokenCost": stats.prompt_token_cost,
        "assistantTokens": stats.assistant_tokens,
        "assistantTokenCost": stats.assistant_token_cost,
        "totalCost": stats.total_cost,
    }


def total_cost_to_json(total: float) -> dict[str, Any]:
    return {"totalCost": total}


def to_bytes(record: TokenUsageRecord) -> bytes:
    return dump_envelope(converter.unstructure(record, TokenUsageRecord), FORMAT_VERSION)


def from_bytes(raw: bytes) -> TokenUsageRecord:
    doc = load_envelope(raw, "token usage record", FORMAT_VERSION, _UPGRADES)
    return converter.structure(doc, TokenUsageRecord)


# -- field checks ---------------------------------------------------------------------------------
def cost_to_nanos(value: Any, field: str = "cost") -> int:
    """A cost (number >= 0; null or absent is 0) as exact integer nano-units.

    A float goes through its shortest decimal form (``repr``), so 0.1 is exactly 100000000
    nano-units, not the binary float's 100000000.0000000055...; beyond nine decimals the cost is
    rounded half-even.
    """
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{field} must be a number", field=field)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{field} must be a finite number", field=field)
    if value < 0:
        raise ValidationError(f"{field} must be >= 0", field=field)
    if value > MAX_COST:
        raise ValidationError(f"{field} must be at most {MAX_COST:g}", field=field)
    if isinstance(value, int):
        return value * NANOS
    exact = decimal.Decimal(repr(value)) * NANOS
    return int(exact.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


def token_count(body: Mapping[str, Any], field: str) -> int:
    value = body.get(field)
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} is required and must be an integer >= 0", field=field)
    if value < 0:
        raise ValidationError(f"{field} must be >= 0", field=field)
    if value > MAX_TOKENS:
        raise ValidationError(f"{field} must be at most {MAX_TOKENS}", field=field)
    return value


def _bounded_text(value: str, field: str, limit: int) -> str:
    if len(value.encode("utf-8", "surrogatepass")) > limit:
        raise ValidationError(f"{field} must be at most {limit} bytes (UTF-8)", field=field)
    return value


def agent_id(body: Mapping[str, Any], field: str = "agentId") -> str:
    return _bounded_text(required_text(body, field), field, MAX_AGENT_ID_BYTES)


def llm_model(body: Mapping[str, Any], field: str = "llmModel") -> str | None:
    """An optional model name; blank is the same as absent (no model: group "unknown")."""
    value = optional_text(body, field)
    if value is None or not value.strip():
        return None
    return _bounded_text(value, field, MAX_MODEL_BYTES)


def role(body: Mapping[str, Any]) -> str:
    value = body.get("role")
    if not isinstance(value, str) or value.strip().lower() not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", field="role")
    return value.strip().lower()


# -- request bodies -----------------------------------------------------------------------------
RECORD_FIELDS = ("agentId", "role", "tokenCount", "cost", "llmModel")
CONVERSATION_FIELDS = (
    "agentId", "llmModel", "promptTokens", "completionTokens", "promptCost", "completionCost",
)


def parse_record(payload: Any) -> dict[str, Any]:
    """The fields of one record (snake_case), checked; the id and createdAt are the server's."""
    body = require_object(payload)
    reject_unknown_fields(body, RECORD_FIELDS)
    return {
        "agent_id": agent_id(body),
        "role": role(body),
        "token_count": token_count(body, "tokenCount"),
        "cost_nanos": cost_to_nanos(body.get("cost"), "cost"),
        "llm_model": llm_model(body),
    }


def parse_conversation(payload: Any) -> dict[str, Any]:
    body = require_object(payload)
    reject_unknown_fields(body, CONVERSATION_FIELDS)
    return {
        "agent_id": agent_id(body),
        "llm_model": llm_model(body),
        "prompt_tokens": token_count(body, "promptTokens"),
        "completion_tokens": token_count(body, "completionTokens"),
        "prompt_cost_nanos": cost_to_nanos(body.get("promptCost"), "promptCost"),
        "completion_cost_nanos": cost_to_nanos(body.get("completionCost"), "completionCost"),
    }
