"""Token usage records and statistics (domains.md section 5): plain attrs classes, no I/O.

Costs are held as integer nano-units (``cost_nanos``: 1e-9 of the currency unit), so that every
sum (a roll-up bucket, a total over a range) is exact; the float ``cost`` of the JSON form is
derived from it. A cost given with more than nine decimals is rounded to nine at input.
"""

from __future__ import annotations

import datetime as _dt
import decimal

import attrs

USER = "user"
ASSISTANT = "assistant"
ROLES = (USER, ASSISTANT)

#: The statistics group of records without a model.
UNKNOWN_MODEL = "unknown"

NANOS = 1_000_000_000

#: llmModel is an element of roll-up keys (never clipped, so that the statistics can name the
#: model): bounded so that every key fits the engine's key limit.
MAX_MODEL_BYTES = 200
#: agentId is an element of index keys (clipped beyond 128 bytes, still exact by digest).
MAX_AGENT_ID_BYTES = 255
#: A sanity bound on one record's cost and token count.
MAX_COST = 1e12
MAX_TOKENS = 2**53


def nanos_to_float(n: int) -> float:
    return n / NANOS


def cost_to_nanos(cost: float | None) -> int:
    """A cost (a finite number >= 0, None for 0) as exact integer nano-units.

    A float goes through its shortest decimal form (``repr``), so 0.1 is exactly 100000000
    nano-units, not the binary float's 100000000.0000000055...; beyond nine decimals the cost is
    rounded half-even.
    """
    if cost is None:
        return 0
    if type(cost) is int:
        return cost * NANOS
    exact = decimal.Decimal(repr(cost)) * NANOS
    return int(exact.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


@attrs.frozen(kw_only=True)
class TokenUsageRecord:
    token_usage_record_id: str
    agent_id: str
    role: str
    token_count: int
    cost_nanos: int
    llm_model: str | None
    created_at: _dt.datetime

    @property
    def cost(self) -> float:
        return nanos_to_float(self.cost_nanos)

    @property
    def group(self) -> str:
        """The statistics group: the model, or ``"unknown"`` when there is none."""
        return self.llm_model if self.llm_model is not None else UNKNOWN_MODEL


@attrs.frozen(kw_only=True)
class ModelStatistics:
    """The usage of one model group over a range (costs exact, in nano-units)."""

    llm_model: str
    prompt_tokens: int = 0
    prompt_cost_nanos: int = 0
    assistant_tokens: int = 0
    assistant_cost_nanos: int = 0

    @property
    def prompt_token_cost(self) -> float:
        return nanos_to_float(self.prompt_cost_nanos)

    @property
    def assistant_token_cost(self) -> float:
        return nanos_to_float(self.assistant_cost_nanos)

    @property
    def total_cost_nanos(self) -> int:
        return self.prompt_cost_nanos + self.assistant_cost_nanos

    @property
    def total_cost(self) -> float:
        return nanos_to_float(self.total_cost_nanos)
