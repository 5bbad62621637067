"""What a client may send about MCP servers: the request shapes (see domains/shapes/).

A configuration is one of three transports (:data:`CONFIGURATION`, a Variants on
``transportType``): each transport's shape has the common fields and its own, so the fields of
another transport are refused as unknown. ``transportType`` is case-insensitive and may be left
out: ``command`` then means stdio, ``url`` streamable_http (the widely used MCP client config
shape). A PUT body may also carry back ``createdAt`` and ``updatedAt`` (a GET answer PUT back as
it is): they are accepted and ignored.

An import document holds configurations in the MCP client config files' form: see
domains/mcp_servers/import_document.py.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from domains.common import blank_to_none
from domains.errors import ValidationError
from domains.mcp_servers.models import (
    DEFAULT_OPEN_TIMEOUT,
    MAX_SERVER_ID_BYTES,
    STDIO,
    STREAMABLE_HTTP,
    WEBSOCKET,
    StdioServer,
    StreamableHttpServer,
    WebsocketServer,
)
from domains.shapes import (
    MISSING,
    NON_BLANK_PATTERN,
    Choice,
    OptionalText,
    Requires,
    Rule,
    Text,
    TextList,
    TextMap,
    Variants,
    wire,
)

#: A serverId, in the path, in a body or as an import document's key.
SERVER_ID = Text(max_bytes=MAX_SERVER_ID_BYTES)
#: Optional text where blank is the same as absent (stored as None).
_OPTIONAL = OptionalText(normalise=blank_to_none)


@attrs.frozen
class FlagOrNull(Rule):
    """``true`` or ``false``; null gives ``default`` (as absence does)."""

    default: bool

    def check(self, value: Any, field: str) -> bool:
        if value is None or value is MISSING:
            return self.default
        if type(value) is not bool:
            raise ValidationError(f"{field} must be true or false", field=field)
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": ["boolean", "null"]}


#: Seconds are floats: an integer beyond a float's range is refused, not stored as infinity.
_MAX_SECONDS = sys.float_info.max


@attrs.frozen
class Seconds(Rule):
    """A positive finite number of seconds, as a float; null gives ``default``."""

    default: float | None

    def check(self, value: Any, field: str) -> float | None:
        if value is None or value is MISSING:
            return self.default
        if type(value) not in (int, float):
            raise ValidationError(f"{field} must be a number of seconds", field=field)
        if value > _MAX_SECONDS:
            raise ValidationError(f"{field} is too large", field=field)
        seconds = float(value)
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValidationError(f"{field} must be a positive number of seconds", field=field)
        return seconds

    def schema(self) -> dict[str, Any]:
        return {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": _MAX_SECONDS}


@attrs.frozen
class WebsocketUrl(Rule):
    """A ``ws://`` or ``wss://`` URL (scheme in any case) with something after the scheme."""

    def check(self, value: Any, field: str) -> str:
        url: str = _URL.check(value, field)
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in ("ws", "wss") or not rest.strip():
            raise ValidationError(
                f"{field} of a websocket server must start with ws:// or wss://", field=field)
        return url

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^[wW][sS][sS]?://[\\s\\S]*{NON_BLANK_PATTERN}"}


_URL = Text()


@attrs.frozen
class Ignored(Rule):
    """Any value, accepted and dropped: the read-only timestamps of a GET answer PUT back."""

    def check(self, value: Any, field: str) -> None:
        return None

    def schema(self) -> dict[str, Any]:
        return {"description": "read-only: accepted and ignored"}


def _transport(value: str, nullable: bool) -> Choice:
    return Choice((value,), case_insensitive=True, nullable=nullable)


@attrs.frozen(kw_only=True)
class _Common:
    """The fields every transport shares. ``serverId`` may repeat the addressed one."""

    server_id: str | None = wire(SERVER_ID, default=None)
    enabled: bool = wire(FlagOrNull(True), default=True)
    tool_name_prefix: str | None = wire(_OPTIONAL, default=None)


@attrs.frozen(kw_only=True)
class StdioConfig(_Common):
    transport_type: str | None = wire(_transport(STDIO, nullable=True), default=None)
    command: str = wire(Text())
    args: list[str] = wire(TextList(), default=attrs.Factory(list))
    env: dict[str, str] = wire(TextMap(), default=attrs.Factory(dict))
    cwd: str | None = wire(_OPTIONAL, default=None)

    def record(
        self, server_id: str, created_at: _dt.datetime, updated_at: _dt.datetime
    ) -> StdioServer:
        return StdioServer(
            server_id=server_id, enabled=self.enabled, tool_name_prefix=self.tool_name_prefix,
            command=self.command, args=self.args, env=self.env, cwd=self.cwd,
            created_at=created_at, updated_at=updated_at)


@attrs.frozen(kw_only=True)
class StreamableHttpConfig(_Common):
    transport_type: str | None = wire(_transport(STREAMABLE_HTTP, nullable=True), default=None)
    url: str = wire(Text())
    token: str | None = wire(_OPTIONAL, default=None)
    headers: dict[str, str] = wire(TextMap(), default=attrs.Factory(dict))

    def record(
        self, server_id: str, created_at: _dt.datetime, updated_at: _dt.datetime
    ) -> StreamableHttpServer:
        return StreamableHttpServer(
            server_id=server_id, enabled=self.enabled, tool_name_prefix=self.tool_name_prefix,
            url=self.url, token=self.token, headers=self.headers,
            created_at=created_at, updated_at=updated_at)


@attrs.frozen(kw_only=True)
class WebsocketConfig(_Common):
    """``clientKey`` needs ``clientCert``."""

    RELATIONS: ClassVar[tuple[Requires, ...]] = (Requires("client_key", "client_cert", Text()),)
    transport_type: str = wire(_transport(WEBSOCKET, nullable=False))
    url: str = wire(WebsocketUrl())
    headers: dict[str, str] = wire(TextMap(), default=attrs.Factory(dict))
    subprotocols: list[str] = wire(TextList(), default=attrs.Factory(list))
    origin: str | None = wire(_OPTIONAL, default=None)
    open_timeout: float = wire(Seconds(DEFAULT_OPEN_TIMEOUT), default=DEFAULT_OPEN_TIMEOUT)
    ping_interval: float | None = wire(Seconds(None), default=None)
    ping_timeout: float | None = wire(Seconds(None), default=None)
    verify_tls: bool = wire(FlagOrNull(True), default=True)
    ca_file: str | None = wire(_OPTIONAL, default=None)
    client_cert: str | None = wire(_OPTIONAL, default=None)
    client_key: str | None = wire(_OPTIONAL, default=None)

    def record(
        self, server_id: str, created_at: _dt.datetime, updated_at: _dt.datetime
    ) -> WebsocketServer:
        return WebsocketServer(
            server_id=server_id, enabled=self.enabled, tool_name_prefix=self.tool_name_prefix,
            url=self.url, headers=self.headers, subprotocols=self.subprotocols,
            origin=self.origin, open_timeout=self.open_timeout,
            ping_interval=self.ping_interval, ping_timeout=self.ping_timeout,
            verify_tls=self.verify_tls, ca_file=self.ca_file, client_cert=self.client_cert,
            client_key=self.client_key, created_at=created_at, updated_at=updated_at)


McpServerConfig = StdioConfig | StreamableHttpConfig | WebsocketConfig


@attrs.frozen(kw_only=True)
class StdioPut(StdioConfig):
    created_at: None = wire(Ignored(), default=None)
    updated_at: None = wire(Ignored(), default=None)


@attrs.frozen(kw_only=True)
class StreamableHttpPut(StreamableHttpConfig):
    created_at: None = wire(Ignored(), default=None)
    updated_at: None = wire(Ignored(), default=None)


@attrs.frozen(kw_only=True)
class WebsocketPut(WebsocketConfig):
    created_at: None = wire(Ignored(), default=None)
    updated_at: None = wire(Ignored(), default=None)


def infer_transport(body: Mapping[str, Any]) -> str | None:
    """Without ``transportType``: stdio when ``command`` is given, streamable_http for ``url``."""
    if "command" in body:
        return STDIO
    if "url" in body:
        return STREAMABLE_HTTP
    return None


MISSING_TRANSPORT = "transportType is required (or command for stdio, url for streamable_http)"
#: A PUT body.
CONFIGURATION = Variants(
    "transportType", {STDIO: StdioPut, STREAMABLE_HTTP: StreamableHttpPut, WEBSOCKET: WebsocketPut},
    case_insensitive=True, infer=infer_transport, missing=MISSING_TRANSPORT)


def check_server_id(server_id: str, config: McpServerConfig, *, where: str = "path") -> str:
    """The addressed serverId, checked; a ``serverId`` in the configuration must be it."""
    SERVER_ID.check(server_id, "serverId")
    if config.server_id is not None and config.server_id != server_id:
        raise ValidationError(
            f"serverId {config.server_id!r} in the body is not the {where}'s {server_id!r}",
            field="serverId")
    return server_id
