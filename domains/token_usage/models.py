"""Token usage records and statistics (domains.md section 5): plain attrs classes, no I/O.

Costs are held as integer nano-units (``cost_nanos``: 1e-9 of the currency unit), so that every
sum (a roll-up bucket, a total over a range) is exact; the float ``cost`` of the JSON form is
derived from it. A cost given with more than nine decimals is rounded to nine at input.
"""

from __future__ import annotations

import datetime as _dt

import attrs

USER = "user"
ASSISTANT = "assistant"
ROLES = (USER, ASSISTANT)

#: The statistics group of records without a model.
UNKNOWN_MODEL = "unknown"

NANOS = 1_000_000_000


def nanos_to_float(n: int) -> float:
    return n / NANOS


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
