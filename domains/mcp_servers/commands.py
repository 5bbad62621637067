"""What a client may send about MCP servers: the request shapes (see domains/shapes/).

A configuration is one of three transports (:data:`CONFIGURATION`, a Variants on
``transportType``): each transport's shape has the common fields and its own, so the fields of
another transport are refused as unknown. ``transportType`` is case-insensitive and may be left
out: ``command`` then means stdio, ``url`` streamable_http (the widely used MCP client config
shape). A PUT body may also carry back ``createdAt`` and ``updatedAt`` (a GET answer PUT back as
it is): they are accepted and ignored.

An import document (:class:`ImportDocument`) holds entries in the MCP client config files' form
(snake_case names, parameters under ``<transport>_params``): :func:`parse_import_entry` brings
one to the shape of a configuration and checks it like a PUT body, without the timestamps.
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
    camel,
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


_MISSING_TRANSPORT = "transportType is required (or command for stdio, url for streamable_http)"
#: A PUT body.
CONFIGURATION = Variants(
    "transportType", {STDIO: StdioPut, STREAMABLE_HTTP: StreamableHttpPut, WEBSOCKET: WebsocketPut},
    case_insensitive=True, infer=infer_transport, missing=_MISSING_TRANSPORT)
#: An import entry, once in the shape of a configuration (no timestamps).
_IMPORT_ENTRY = Variants(
    "transportType",
    {STDIO: StdioConfig, STREAMABLE_HTTP: StreamableHttpConfig, WEBSOCKET: WebsocketConfig},
    case_insensitive=True, infer=infer_transport, missing=_MISSING_TRANSPORT)


def check_server_id(server_id: str, config: McpServerConfig, *, where: str = "path") -> str:
    """The addressed serverId, checked; a ``serverId`` in the configuration must be it."""
    SERVER_ID.check(server_id, "serverId")
    if config.server_id is not None and config.server_id != server_id:
        raise ValidationError(
            f"serverId {config.server_id!r} in the body is not the {where}'s {server_id!r}",
            field="serverId")
    return server_id


# -- an import document ---------------------------------------------------------------------------
@attrs.frozen
class ServerEntries(Rule):
    """An object of entries by serverId; each entry is checked on its own at import."""

    def check(self, value: Any, field: str) -> dict[str, object]:
        if type(value) is not dict:
            raise ValidationError(
                'the import document must be {"mcpServers": {"<serverId>": {...}, ...}}',
                field=field)
        return dict(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": True,
                "description": "configurations by serverId, as PUT takes them (names may be "
                               "snake_case; a transport's parameters may sit under "
                               "<transport>_params); an entry that is not one is reported as "
                               "failed, not refused"}


@attrs.frozen(kw_only=True)
class ImportDocument:
    """``{"mcpServers": {"<serverId>": {...}, ...}}``, the MCP client config files' form."""

    mcp_servers: dict[str, object] = wire(ServerEntries())


PARAMS_FIELDS = {STDIO: "stdioParams", STREAMABLE_HTTP: "streamableHttpParams",
                 WEBSOCKET: "websocketParams"}


def _camel_keys(entry: Mapping[Any, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if not isinstance(key, str):
            raise ValidationError(f"field names must be strings in {where}", field=None)
        name = camel(key)
        if name in out:
            raise ValidationError(f"{key!r} is given twice in {where}", field=name)
        out[name] = value
    return out


def parse_import_entry(server_id: str, entry: object) -> McpServerConfig:
    """One server of an import document, checked as a configuration. Field names may be
    snake_case (``transport_type``, ``tool_name_prefix``) or camelCase; the transport's
    parameters may sit at the top or under ``<transport>_params``."""
    SERVER_ID.check(server_id, "serverId")
    if not isinstance(entry, Mapping):
        raise ValidationError("the configuration must be a JSON object", field=None)
    body = _camel_keys(entry, "the configuration")
    nested = [f for f in PARAMS_FIELDS.values() if f in body]
    if len(nested) > 1:
        raise ValidationError(f"only one of {', '.join(nested)} may be given", field=nested[1])
    if nested:
        params = body.pop(nested[0])
        if not isinstance(params, Mapping):
            raise ValidationError(f"{nested[0]} must be an object", field=nested[0])
        implied = next(t for t, f in PARAMS_FIELDS.items() if f == nested[0])
        if body.get("transportType") is None:
            body["transportType"] = implied
        elif _IMPORT_ENTRY.choose(body) != implied:
            raise ValidationError(
                f"{nested[0]} does not belong to transport {body['transportType']!r}",
                field=nested[0])
        for key, value in _camel_keys(params, nested[0]).items():
            if key in body:
                raise ValidationError(f"{key} is given both in {nested[0]} and outside", field=key)
            body[key] = value
    config: McpServerConfig = _IMPORT_ENTRY.parse(body)
    check_server_id(server_id, config, where="entry key")
    return config

