"""MCP server configurations (domains.md section 4): plain attrs classes, no I/O.

One class per transport, sharing the common fields of :class:`McpServer`; ``transport_type`` is
fixed by the class. Every field is keyword-only, so the per-transport fields may have defaults or
not regardless of the order in which attrs collects them.
"""

from __future__ import annotations

import datetime as _dt

import attrs

from domains.shapes import Choice, Text, wire
from domains.shapes.rules import RULE_KEY

STDIO = "stdio"
STREAMABLE_HTTP = "streamable_http"
WEBSOCKET = "websocket"
TRANSPORT_TYPES = (STDIO, STREAMABLE_HTTP, WEBSOCKET)

DEFAULT_OPEN_TIMEOUT = 10.0

#: A serverId is a record key and an index entry: bounded so that every key fits the engine's
#: limit and no index entry is clipped (clipping would make the list order approximate).
MAX_SERVER_ID_BYTES = 128


def _answered(transport: str) -> dict[str, Choice]:
    # What the answer schema says of a record's transportType (its JSON is fixed by the class).
    return {RULE_KEY: Choice((transport,))}


@attrs.frozen(kw_only=True)
class McpServer:
    """The fields every transport shares."""

    server_id: str
    enabled: bool = True
    tool_name_prefix: str | None = None
    created_at: _dt.datetime
    updated_at: _dt.datetime

    transport_type: str = attrs.field(init=False, default="")


@attrs.frozen(kw_only=True)
class StdioServer(McpServer):
    transport_type: str = attrs.field(init=False, default=STDIO,
                                      metadata=_answered(STDIO))
    command: str
    args: list[str] = attrs.field(factory=list)
    env: dict[str, str] = attrs.field(factory=dict)
    cwd: str | None = None


@attrs.frozen(kw_only=True)
class StreamableHttpServer(McpServer):
    transport_type: str = attrs.field(init=False, default=STREAMABLE_HTTP,
                                      metadata=_answered(STREAMABLE_HTTP))
    url: str
    token: str | None = None
    headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class WebsocketServer(McpServer):
    transport_type: str = attrs.field(init=False, default=WEBSOCKET,
                                      metadata=_answered(WEBSOCKET))
    url: str
    headers: dict[str, str] = attrs.field(factory=dict)
    subprotocols: list[str] = attrs.field(factory=list)
    origin: str | None = None
    open_timeout: float = DEFAULT_OPEN_TIMEOUT
    ping_interval: float | None = None
    ping_timeout: float | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


CLASS_OF_TRANSPORT: dict[str, type[McpServer]] = {
    STDIO: StdioServer,
    STREAMABLE_HTTP: StreamableHttpServer,
    WEBSOCKET: WebsocketServer,
}

IMPORTED = "imported"
FAILED = "failed"


@attrs.frozen
class ImportEntryResult:
    """The outcome of one server of an import: status ``imported`` or ``failed``."""

    status: str = wire(Choice((IMPORTED, FAILED)))
    message: str = wire(Text(blank=True))


@attrs.frozen
class ImportResult:
    imported_count: int
    failed_count: int
    results: dict[str, ImportEntryResult]
