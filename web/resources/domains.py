"""The resource modules of the domains, in the order their routes are documented."""

from __future__ import annotations

from types import ModuleType

from web.resources import artifacts, channel, definitions, prompts, runtime_records

MODULES: list[ModuleType] = [prompts, definitions, runtime_records, artifacts, channel]
