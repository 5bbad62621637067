"""The MCP servers codec: the one place where configurations become JSON or bytes (request
bodies are the shapes of domains/mcp_servers/commands.py).

JSON is flat and camelCase: the common fields, then the fields of the configuration's transport,
then the timestamps. Stored bytes are that JSON plus a format version, ``{"v": 1, ...}``;
:func:`from_bytes` upgrades older versions on read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domains.codec_support import (
    RecordFormatError,
    dump_envelope,
    load_envelope,
    make_converter,
    register_camel,
)
from domains.mcp_servers.models import (
    CLASS_OF_TRANSPORT,
    ImportEntryResult,
    ImportResult,
    McpServer,
)

FORMAT_VERSION = 1

converter = make_converter()
for _cls in (*CLASS_OF_TRANSPORT.values(), ImportEntryResult, ImportResult):
    register_camel(converter, _cls)

_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


# -- records ------------------------------------------------------------------------------------
def to_json(server: McpServer) -> dict[str, Any]:
    body = converter.unstructure(server, type(server))
    out = {
        "serverId": body.pop("serverId"),
        "transportType": server.transport_type,
        "enabled": body.pop("enabled"),
        "toolNamePrefix": body.pop("toolNamePrefix"),
    }
    created, updated = body.pop("createdAt"), body.pop("updatedAt")
    body.pop("transportType", None)
    out.update(body)
    out["createdAt"] = created
    out["updatedAt"] = updated
    return out


def import_result_to_json(result: ImportResult) -> dict[str, Any]:
    return converter.unstructure(result, ImportResult)


def to_bytes(server: McpServer) -> bytes:
    return dump_envelope(to_json(server), FORMAT_VERSION)


def from_bytes(raw: bytes) -> McpServer:
    doc = load_envelope(raw, "MCP server configuration", FORMAT_VERSION, _UPGRADES)
    transport = doc.pop("transportType", None)
    cls = CLASS_OF_TRANSPORT.get(transport) if isinstance(transport, str) else None
    if cls is None:
        raise RecordFormatError(f"unknown transport type {transport!r} in a stored configuration")
    return converter.structure(doc, cls)
