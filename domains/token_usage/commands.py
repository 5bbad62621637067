"""What a client may send about token usage: the request shapes (see domains/shapes/) and the
rule of the range bounds of its queries.

Both bodies are the benchmarked hot path of this server: each field is one rule call, and the
costs stay the numbers the client sent (the service makes them exact nano-units).
"""

from __future__ import annotations

import attrs

from domains.common import blank_to_none
from domains.shapes import Choice, Integer, Number, OptionalText, Text, Timestamp, wire
from domains.token_usage.models import (
    MAX_AGENT_ID_BYTES,
    MAX_COST,
    MAX_MODEL_BYTES,
    MAX_TOKENS,
    ROLES,
)

AGENT_ID = Text(max_bytes=MAX_AGENT_ID_BYTES)
#: An optional model name; blank is the same as absent (no model: group "unknown").
LLM_MODEL = OptionalText(normalise=blank_to_none, max_bytes=MAX_MODEL_BYTES)
TOKENS = Integer(minimum=0, maximum=MAX_TOKENS)
#: A cost: a number >= 0; null or absence is 0.
COST = Number(minimum=0, maximum=MAX_COST, nullable=True)
#: ``?start=`` and ``?end=`` of the queries: inclusive bounds, RFC 3339 or a bare date.
BOUND = Timestamp()


@attrs.frozen(kw_only=True)
class RecordUsage:
    """One record; its id and createdAt are the server's."""

    agent_id: str = wire(AGENT_ID)
    role: str = wire(Choice(ROLES, case_insensitive=True))
    token_count: int = wire(TOKENS)
    cost: float | None = wire(COST, default=None)
    llm_model: str | None = wire(LLM_MODEL, default=None)


@attrs.frozen(kw_only=True)
class RecordConversation:
    """A conversation turn: the user's (prompt) and the assistant's (completion) usage."""

    agent_id: str = wire(AGENT_ID)
    llm_model: str | None = wire(LLM_MODEL, default=None)
    prompt_tokens: int = wire(TOKENS)
    completion_tokens: int = wire(TOKENS)
    prompt_cost: float | None = wire(COST, default=None)
    completion_cost: float | None = wire(COST, default=None)
