"""Domain services driven with JSON bodies, as the web layer drives them: each body is parsed by
its request shape (domains/shapes.py) and the typed command goes to the service. The domain tests
keep their bodies as JSON, so they prove the shapes' checks and the services' rules together.
Query arguments given as text (``start="2026-03-01"``) are checked by their rule, as the web
layer checks the query string."""

from __future__ import annotations

from typing import Any

from domains.agent_definitions.commands import CreateAgentDefinition, PatchAgentDefinition
from domains.agent_teams.commands import CreateAgentTeam, PatchAgentTeam
from domains.artifacts.commands import CreateArtifact
from domains.mcp_servers.commands import CONFIGURATION
from domains.mcp_servers.import_document import ImportDocument
from domains.prompts.commands import CreatePrompt, PatchPrompt, RevisePrompt
from domains.shapes import Rule, Variants, parse
from domains.token_usage.commands import BOUND, RecordConversation, RecordUsage

#: method name -> (position of the body among the positional arguments, its shape), by service.
PROMPTS = {"create": (0, CreatePrompt), "create_revision": (1, RevisePrompt),
           "update": (1, PatchPrompt)}
AGENT_DEFINITIONS = {"create": (0, CreateAgentDefinition), "update": (1, PatchAgentDefinition)}
AGENT_TEAMS = {"create": (0, CreateAgentTeam), "update": (1, PatchAgentTeam)}
ARTIFACTS = {"create": (0, CreateArtifact)}
MCP_SERVERS: dict[str, tuple[int, type | Variants]] = {
    "configure": (1, CONFIGURATION), "import_servers": (0, ImportDocument)}
TOKEN_USAGE = {"record": (0, RecordUsage), "record_conversation": (0, RecordConversation)}
#: Query arguments of the token usage reads, by name.
TOKEN_USAGE_QUERIES = {"start": BOUND, "end": BOUND}


class JsonCommands:
    """``service`` whose command methods named in ``shapes`` take a JSON body in place of the
    typed command; every other attribute is the service's own."""

    def __init__(self, service: Any, shapes: dict[str, tuple[int, Any]],
                 queries: dict[str, Rule] | None = None) -> None:
        self.service = service
        self._shapes = shapes
        self._queries = queries or {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.service, name)
        if name not in self._shapes and not self._queries:
            return method
        position, shape = self._shapes.get(name, (None, None))

        def call(*args: Any, **kwargs: Any) -> Any:
            given = list(args)
            if position is not None:
                body = given[position]
                given[position] = (shape.parse(body) if isinstance(shape, Variants)
                                   else parse(shape, body))
            for key, rule in self._queries.items():
                if isinstance(kwargs.get(key), str):
                    kwargs[key] = rule.check(kwargs[key], key)
            return method(*given, **kwargs)

        return call
