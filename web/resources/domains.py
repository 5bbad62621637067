"""The resource modules of the domains, in the order their routes are documented."""

from __future__ import annotations

from types import ModuleType

from web.resources import definitions, prompts

MODULES: list[ModuleType] = [prompts, definitions]
