"""Description: the JSON Schema of a shape or record class, generated from its declaration."""

from __future__ import annotations

import datetime as _dt
import types
import typing
from typing import Any

import attrs

from domains.shapes.rules import RULE_KEY, camel

_SCHEMAS: dict[type, dict[str, Any]] = {}


def _type_schema(tp: Any) -> dict[str, Any]:
    """The JSON Schema of a plain field type of a record (answer shapes)."""
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is Any:  # free JSON (a record's metadata)
        return {}
    if tp is _dt.datetime:
        return {"type": "string", "format": "date-time"}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = _type_schema(rest[0]) if len(rest) == 1 else {"anyOf": [
            _type_schema(a) for a in rest]}
        if isinstance(inner.get("type"), str) and set(inner) <= {"type", "format"}:
            return {**inner, "type": [inner["type"], "null"]}
        return {"anyOf": [inner, {"type": "null"}]}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1])}
    if attrs.has(tp):
        return json_schema(tp)
    raise TypeError(f"no JSON Schema for the type {tp!r}")


def json_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of a shape (request) or record (answer) class, built once.

    A field with a :class:`Rule` is described by it, and is required when it has no default. A
    field without one is described by its type and is always required (records answer every
    field). Unknown properties are not allowed, unless the shape ignores them."""
    found = _SCHEMAS.get(cls)
    if found is not None:
        return found
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for a in attrs.fields(cls):
        name = camel(a.name)
        rule = a.metadata.get(RULE_KEY)
        if rule is None:
            properties[name] = _type_schema(hints[a.name])
            required.append(name)
        else:
            properties[name] = rule.schema()
            if a.default is attrs.NOTHING or not a.init:  # not init: a record's fixed field
                required.append(name)
    lenient = bool(getattr(cls, "IGNORE_UNKNOWN", False))  # see checking.ignores_unknown_fields
    found = {"type": "object", "properties": properties, "additionalProperties": lenient}
    if required:
        found["required"] = required
    stated = relations(cls)
    if stated:
        found["allOf"] = list(stated)
    _SCHEMAS[cls] = found
    return found


def relations(cls: type) -> tuple[dict[str, Any], ...]:
    """The rules between fields that a shape states in ``RELATIONS``, as JSON Schema.

    Each entry is a :class:`~domains.shapes.rules.Requires` (checked by parse(), stated by its
    ``schema()``) or a JSON Schema fragment (a rule the service checks: only these pairs of
    values, this field when that one has this value), built from the same declarations that the
    checking uses. The whole body must satisfy each (the schema's ``allOf``). A subclass
    inherits its base's relations, or replaces them with ones that say at least as much (one
    ``anyOf`` of complete cases reads better, and is easier to generate from, than several that
    cross)."""
    return tuple(r if isinstance(r, dict) else r.schema() for r in getattr(cls, "RELATIONS", ()))
