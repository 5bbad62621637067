"""External-channel routes (api.md "External channel", domains.md section 7), by concern:
ingress.py (the two signed gateway POSTs), records.py (bindings, inbox, receipts, sources,
replies, delivery events) and operators.py (the outbox's list, retry and summary; capabilities).
Request bodies are the shapes of domains/channel/commands.py; answers and their schemas come from
domains/channel/codec.py.
"""

from __future__ import annotations

from typing import Any

import falcon

from web.context import AppContext
from web.resources.channel import ingress, operators, records

PATHS: dict[str, Any] = {**records.BINDING_PATHS, **ingress.PATHS, **records.PATHS,
                         **operators.PATHS}


def add_routes(app: falcon.App, ctx: AppContext) -> None:
    records.add_binding_routes(app, ctx)
    ingress.add_routes(app, ctx)
    records.add_routes(app, ctx)
    operators.add_routes(app, ctx)
