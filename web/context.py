"""What every resource is built with: the store, the services over it, and the settings."""

from __future__ import annotations

from typing import Any

import attrs

from engine import Store
from web.settings import Settings


@attrs.define
class AppContext:
    store: Store
    settings: Settings
    services: Any  # domains.registry.Services

    @property
    def max_body(self) -> int:
        return self.settings.max_body_bytes
