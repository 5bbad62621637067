"""Domain services driven with JSON bodies, as the web layer drives them: each body is parsed by
its request shape (domains/shapes.py) and the typed command goes to the service. The domain tests
keep their bodies as JSON, so they prove the shapes' checks and the services' rules together."""

from __future__ import annotations

from typing import Any

from domains.agent_definitions.commands import CreateAgentDefinition, PatchAgentDefinition
from domains.agent_teams.commands import CreateAgentTeam, PatchAgentTeam
from domains.artifacts.commands import CreateArtifact
from domains.prompts.commands import CreatePrompt, PatchPrompt, RevisePrompt
from domains.shapes import parse

#: method name -> (position of the body among the positional arguments, its shape), by service.
PROMPTS = {"create": (0, CreatePrompt), "create_revision": (1, RevisePrompt),
           "update": (1, PatchPrompt)}
AGENT_DEFINITIONS = {"create": (0, CreateAgentDefinition), "update": (1, PatchAgentDefinition)}
AGENT_TEAMS = {"create": (0, CreateAgentTeam), "update": (1, PatchAgentTeam)}
ARTIFACTS = {"create": (0, CreateArtifact)}


class JsonCommands:
    """``service`` whose command methods named in ``shapes`` take a JSON body in place of the
    typed command; every other attribute is the service's own."""

    def __init__(self, service: Any, shapes: dict[str, tuple[int, type]]) -> None:
        self.service = service
        self._shapes = shapes

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.service, name)
        if name not in self._shapes:
            return method
        position, shape = self._shapes[name]

        def call(*args: Any, **kwargs: Any) -> Any:
            given = list(args)
            given[position] = parse(shape, given[position])
            return method(*given, **kwargs)

        return call
