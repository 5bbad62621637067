"""The agent-teams codec: the one place where team definitions become JSON or bytes, and where
request bodies are checked and parsed.

Stored bytes are the camelCase JSON plus a format version, ``{"v": 1, ...}``, upgraded on read
when older. Parsing checks shapes and types; the rules that relate fields to each other (member
names unique, the coordinator among the nodes) are checked by :func:`check_team`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from domains.agent_teams.models import REFERENCE_TYPES, AgentTeamDefinition, TeamNode
from domains.codec_support import RecordFormatError as RecordFormatError
from domains.codec_support import (
    dump_envelope,
    load_envelope,
    make_converter,
    register_camel,
)
from domains.common import (
    optional_text,
    reject_unknown_fields,
    require_object,
    required_text,
)
from domains.errors import ValidationError

FORMAT_VERSION = 1




converter = make_converter()
register_camel(converter, TeamNode)
register_camel(converter, AgentTeamDefinition)

_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


# -- records ------------------------------------------------------------------------------------
def to_json(team: AgentTeamDefinition) -> dict[str, Any]:
    return converter.unstructure(team, AgentTeamDefinition)


def to_bytes(team: AgentTeamDefinition) -> bytes:
    return dump_envelope(to_json(team), FORMAT_VERSION)


def from_bytes(raw: bytes) -> AgentTeamDefinition:
    doc = load_envelope(raw, "team definition", FORMAT_VERSION, _UPGRADES)
    return converter.structure(doc, AgentTeamDefinition)


# -- request bodies -----------------------------------------------------------------------------
CREATE_FIELDS = ("name", "description", "role", "avatarUrl", "coordinatorMemberName", "nodes")
PATCH_FIELDS = CREATE_FIELDS
READ_ONLY_FIELDS = ("id", "createdAt", "updatedAt")
NODE_FIELDS = ("memberName", "referenceId", "referenceType")


def _trimmed_or_none(body: Mapping[str, Any], field: str) -> str | None:
    value = optional_text(body, field)
    value = value.strip() if value is not None else None
    return value or None


def _nodes(body: Mapping[str, Any]) -> list[TeamNode]:
    value = body.get("nodes", [])
    if value is None:
        value = []
    if not isinstance(value, list):
        raise ValidationError("nodes must be a list of objects", field="nodes")
    nodes = []
    for i, raw in enumerate(value):
        where = f"nodes[{i}]"
        if not isinstance(raw, Mapping):
            raise ValidationError(f"{where} must be an object", field=where)
        for name in raw:
            if name not in NODE_FIELDS:
                raise ValidationError(f"unknown field {name!r} in {where}",
                                      field=f"{where}.{name}", code="UNKNOWN_FIELD")
        try:
            member = required_text(raw, "memberName")
            reference = required_text(raw, "referenceId")
            kind = required_text(raw, "referenceType")
        except ValidationError as exc:
            raise ValidationError(f"{where}: {exc.detail}", field=f"{where}.{exc.field}") from None
        if kind not in REFERENCE_TYPES:
            raise ValidationError(
                f"{where}.referenceType must be one of {', '.join(REFERENCE_TYPES)}",
                field=f"{where}.referenceType",
            )
        nodes.append(TeamNode(member_name=member, reference_id=reference, reference_type=kind))
    return nodes


def parse_create(payload: Any) -> dict[str, Any]:
    body = require_object(payload)
    reject_unknown_fields(body, CREATE_FIELDS)
    return {
        "name": required_text(body, "name"),
        "description": required_text(body, "description"),
        "role": _trimmed_or_none(body, "role"),
        "avatar_url": _trimmed_or_none(body, "avatarUrl"),
        "coordinator_member_name": required_text(body, "coordinatorMemberName"),
        "nodes": _nodes(body),
    }


def parse_patch(payload: Any) -> dict[str, Any]:
    """Only the fields given (snake_case); ``nodes`` replaces wholesale."""
    body = require_object(payload)
    for name in READ_ONLY_FIELDS:
        if name in body:
            raise ValidationError(f"{name} cannot be changed", field=name, code="READ_ONLY_FIELD")
    reject_unknown_fields(body, PATCH_FIELDS)
    out: dict[str, Any] = {}
    for field, attr in (("name", "name"), ("description", "description"),
                        ("coordinatorMemberName", "coordinator_member_name")):
        if field in body:
            out[attr] = required_text(body, field)
    for field, attr in (("role", "role"), ("avatarUrl", "avatar_url")):
        if field in body:
            out[attr] = _trimmed_or_none(body, field)
    if "nodes" in body:
        out["nodes"] = _nodes(body)
    return out


def check_team(coordinator_member_name: str, nodes: list[TeamNode]) -> None:
    """Member names unique within the team; the coordinator names one of the nodes."""
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        if node.member_name in seen:
            raise ValidationError(
                f"member name {node.member_name!r} appears more than once",
                field=f"nodes[{i}].memberName",
            )
        seen.add(node.member_name)
    if coordinator_member_name not in seen:
        raise ValidationError(
            f"coordinatorMemberName {coordinator_member_name!r} names none of the nodes",
            field="coordinatorMemberName",
        )
