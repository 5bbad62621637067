"""The MCP servers codec: the one place where configurations become JSON or bytes, and where
request bodies (a PUT body, an import document) are checked and parsed.

JSON is flat and camelCase: the common fields, then the fields of the configuration's transport,
then the timestamps. Stored bytes are that JSON plus a format version, ``{"v": 1, ...}``;
:func:`from_bytes` upgrades older versions on read.

Parsing produces ``(class, fields)`` where ``fields`` are the constructor arguments without the
timestamps (the service sets those). Both entry points share one validation, :func:`_build`, over
a camelCase dict, so a PUT and an import entry obey exactly the same rules (domains.md section 4).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from domains.codec_support import (
    RecordFormatError,
    camel,
    dump_envelope,
    load_envelope,
    make_converter,
)
from domains.common import (
    optional_text,
    reject_unknown_fields,
    require_object,
    string_list,
    string_map,
)
from domains.errors import ValidationError
from domains.mcp_servers.models import (
    CLASS_OF_TRANSPORT,
    DEFAULT_OPEN_TIMEOUT,
    STDIO,
    STREAMABLE_HTTP,
    TRANSPORT_TYPES,
    WEBSOCKET,
    ImportEntryResult,
    ImportResult,
    McpServer,
    transport_attrs,
)

FORMAT_VERSION = 1

#: A serverId is a record key and an index entry: bounded so that every key fits the engine's
#: limit and no index entry is clipped (clipping would make the list order approximate).
MAX_SERVER_ID_BYTES = 128




converter = make_converter()
for _cls in CLASS_OF_TRANSPORT.values():
    _renames = {a.name: override(rename=camel(a.name)) for a in attrs.fields(_cls)}
    converter.register_unstructure_hook(_cls, make_dict_unstructure_fn(_cls, converter, **_renames))
    converter.register_structure_hook(_cls, make_dict_structure_fn(_cls, converter, **_renames))
for _cls in (ImportEntryResult, ImportResult):
    _renames = {a.name: override(rename=camel(a.name)) for a in attrs.fields(_cls)}
    converter.register_unstructure_hook(_cls, make_dict_unstructure_fn(_cls, converter, **_renames))

_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

COMMON_FIELDS = ("serverId", "transportType", "enabled", "toolNamePrefix")
READ_ONLY_FIELDS = ("createdAt", "updatedAt")
PARAMS_FIELDS = {STDIO: "stdioParams", STREAMABLE_HTTP: "streamableHttpParams",
                 WEBSOCKET: "websocketParams"}


def transport_fields(transport: str) -> tuple[str, ...]:
    """The camelCase JSON fields of a transport's parameters."""
    return tuple(camel(a) for a in transport_attrs(CLASS_OF_TRANSPORT[transport]))


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


# -- field checks ---------------------------------------------------------------------------------
def check_server_id(value: Any, field: str = "serverId") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field} is required and must be a non-blank string", field=field)
    if len(value.encode("utf-8", "surrogatepass")) > MAX_SERVER_ID_BYTES:
        raise ValidationError(
            f"{field} must be at most {MAX_SERVER_ID_BYTES} bytes (UTF-8)", field=field
        )
    return value


def _transport_type(value: Any) -> str:
    if not isinstance(value, str) or value.strip().lower() not in TRANSPORT_TYPES:
        raise ValidationError(
            f"transportType must be one of {', '.join(TRANSPORT_TYPES)}, not {value!r}",
            field="transportType",
        )
    return value.strip().lower()


def _blank_to_none(body: Mapping[str, Any], field: str) -> str | None:
    value = optional_text(body, field)
    return None if value is None or not value.strip() else value


def _required(body: Mapping[str, Any], field: str, transport: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            f"{field} is required for the {transport} transport and must be a non-blank string",
            field=field,
        )
    return value


def _flag(body: Mapping[str, Any], field: str, default: bool) -> bool:
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValidationError(f"{field} must be true or false", field=field)
    return value


def _seconds(body: Mapping[str, Any], field: str, default: float | None) -> float | None:
    value = body.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{field} must be a number of seconds", field=field)
    try:
        seconds = float(value)
    except OverflowError:  # an integer too large for a float
        raise ValidationError(f"{field} is too large", field=field) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValidationError(f"{field} must be a positive number of seconds", field=field)
    return seconds


def _build(body: Mapping[str, Any], server_id: str) -> tuple[type[McpServer], dict[str, Any]]:
    """Check a camelCase configuration (unknown fields already rejected by the caller, against
    the transport it resolves to) and return the class and constructor fields."""
    transport = resolve_transport(body)
    fields: dict[str, Any] = {
        "server_id": server_id,
        "enabled": _flag(body, "enabled", True),
        "tool_name_prefix": _blank_to_none(body, "toolNamePrefix"),
    }
    if transport == STDIO:
        fields.update(
            command=_required(body, "command", transport),
            args=string_list(body, "args"),
            env=string_map(body, "env"),
            cwd=_blank_to_none(body, "cwd"),
        )
    elif transport == STREAMABLE_HTTP:
        fields.update(
            url=_required(body, "url", transport),
            token=_blank_to_none(body, "token"),
            headers=string_map(body, "headers"),
        )
    else:
        url = _required(body, "url", transport)
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in ("ws", "wss") or not rest.strip():
            raise ValidationError(
                "url of a websocket server must start with ws:// or wss://", field="url"
            )
        client_cert = _blank_to_none(body, "clientCert")
        client_key = _blank_to_none(body, "clientKey")
        if client_key is not None and client_cert is None:
            raise ValidationError("clientKey requires clientCert", field="clientKey")
        fields.update(
            url=url,
            headers=string_map(body, "headers"),
            subprotocols=string_list(body, "subprotocols"),
            origin=_blank_to_none(body, "origin"),
            open_timeout=_seconds(body, "openTimeout", DEFAULT_OPEN_TIMEOUT),
            ping_interval=_seconds(body, "pingInterval", None),
            ping_timeout=_seconds(body, "pingTimeout", None),
            verify_tls=_flag(body, "verifyTls", True),
            ca_file=_blank_to_none(body, "caFile"),
            client_cert=client_cert,
            client_key=client_key,
        )
    return CLASS_OF_TRANSPORT[transport], fields


def resolve_transport(body: Mapping[str, Any]) -> str:
    """``transportType`` if given; else stdio when ``command`` is present, streamable_http when
    ``url`` is (the widely used MCP client config shape)."""
    given = body.get("transportType")
    if given is not None:
        return _transport_type(given)
    if "command" in body:
        return STDIO
    if "url" in body:
        return STREAMABLE_HTTP
    raise ValidationError(
        "transportType is required (or command for stdio, url for streamable_http)",
        field="transportType",
    )


# -- a PUT body -----------------------------------------------------------------------------------
def parse_put(payload: Any, server_id: str) -> tuple[type[McpServer], dict[str, Any]]:
    """A whole configuration (PUT replaces): camelCase, unknown fields and the fields of another
    transport rejected. ``serverId`` in the body, if any, must be the one addressed.
    ``createdAt``/``updatedAt`` are accepted and ignored, so a GET answer can be PUT back."""
    server_id = check_server_id(server_id)
    body = require_object(payload)
    transport = resolve_transport(body)
    reject_unknown_fields(body, (*COMMON_FIELDS, *READ_ONLY_FIELDS, *transport_fields(transport)))
    if "serverId" in body and body["serverId"] != server_id:
        raise ValidationError(
            f"serverId {body['serverId']!r} in the body is not the addressed {server_id!r}",
            field="serverId",
        )
    return _build(body, server_id)


# -- an import document ---------------------------------------------------------------------------
def parse_import_document(payload: Any) -> dict[str, Any]:
    """The ``mcpServers`` map of ``{"mcpServers": {...}}``; anything else is a 400 before any
    write. The entries themselves are checked one by one (:func:`parse_import_entry`)."""
    body = require_object(payload)
    reject_unknown_fields(body, ("mcpServers",))
    servers = body.get("mcpServers")
    if not isinstance(servers, Mapping):
        raise ValidationError(
            'the import document must be {"mcpServers": {"<serverId>": {...}, ...}}',
            field="mcpServers",
        )
    return dict(servers)


def _camel_keys(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if not isinstance(key, str):
            raise ValidationError(f"field names must be strings in {where}", field=None)
        name = camel(key)
        if name in out:
            raise ValidationError(f"{key!r} is given twice in {where}", field=name)
        out[name] = value
    return out


def parse_import_entry(server_id: Any, entry: Any) -> tuple[type[McpServer], dict[str, Any]]:
    """One server of an import document. Field names may be snake_case (``transport_type``,
    ``tool_name_prefix``, as in the MCP client config files) or camelCase; the transport's
    parameters may sit at the top or under ``<transport>_params``."""
    server_id = check_server_id(server_id, "serverId")
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
        elif _transport_type(body["transportType"]) != implied:
            raise ValidationError(
                f"{nested[0]} does not belong to transport {body['transportType']!r}",
                field=nested[0],
            )
        for key, value in _camel_keys(params, nested[0]).items():
            if key in body:
                raise ValidationError(f"{key} is given both in {nested[0]} and outside", field=key)
            body[key] = value
    transport = resolve_transport(body)
    reject_unknown_fields(body, (*COMMON_FIELDS, *transport_fields(transport)))
    if "serverId" in body and body["serverId"] != server_id:
        raise ValidationError(
            f"serverId {body['serverId']!r} is not the entry's key {server_id!r}", field="serverId"
        )
    return _build(body, server_id)
