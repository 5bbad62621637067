"""An import document, ``{"mcpServers": {"<serverId>": {...}, ...}}``: the MCP client config
files' form, whose entries are checked one by one (an invalid one is reported, not refused).

An entry's names may be snake_case (``transport_type``, ``tool_name_prefix``) or camelCase, and
a transport's parameters may sit under ``<transport>_params``: :func:`parse_import_entry` brings
it to the shape of a configuration (domains/mcp_servers/commands.py) and checks it like a PUT
body, without the read-only timestamps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from domains.errors import ValidationError
from domains.mcp_servers.commands import (
    MISSING_TRANSPORT,
    SERVER_ID,
    McpServerConfig,
    StdioConfig,
    StreamableHttpConfig,
    WebsocketConfig,
    check_server_id,
    infer_transport,
)
from domains.mcp_servers.models import STDIO, STREAMABLE_HTTP, WEBSOCKET
from domains.shapes import Rule, Variants, camel, wire

#: An import entry, once in the shape of a configuration (no timestamps).
ENTRY = Variants(
    "transportType",
    {STDIO: StdioConfig, STREAMABLE_HTTP: StreamableHttpConfig, WEBSOCKET: WebsocketConfig},
    case_insensitive=True, infer=infer_transport, missing=MISSING_TRANSPORT)


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
        elif ENTRY.choose(body) != implied:
            raise ValidationError(
                f"{nested[0]} does not belong to transport {body['transportType']!r}",
                field=nested[0])
        for key, value in _camel_keys(params, nested[0]).items():
            if key in body:
                raise ValidationError(f"{key} is given both in {nested[0]} and outside", field=key)
            body[key] = value
    config: McpServerConfig = ENTRY.parse(body)
    check_server_id(server_id, config, where="entry key")
    return config

