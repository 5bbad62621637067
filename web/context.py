"""What every resource is built with: the store, the services over it, and the settings."""

from __future__ import annotations

import attrs

from domains.registry import Services
from engine import Store
from web.settings import Settings


@attrs.define
class AppContext:
    store: Store
    settings: Settings
    services: Services

    @property
    def max_body(self) -> int:
        return self.settings.max_body_bytes
