"""Checking: a JSON value made an instance of a shape by a strict cattrs converter, or refused
with a ValidationError naming the field."""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, override

from domains.errors import ValidationError
from domains.shapes.description import json_schema
from domains.shapes.rules import MISSING, RULE_KEY, Requires, Rule, camel

T = TypeVar("T")

_converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=False)


@attrs.frozen
class _Parser:
    names: frozenset[str]
    read_only: tuple[str, ...]
    lenient: bool
    rules: dict[str, Rule]
    structure: Callable[[Mapping[str, Any], type], Any]
    relations: tuple[Requires, ...]


_PARSERS: dict[type, _Parser] = {}


def _hook(rule: Rule, field: str) -> Callable[[Any, Any], Any]:
    check = rule.check
    return lambda value, _type: check(value, field)


def _parser(cls: type) -> _Parser:
    found = _PARSERS.get(cls)
    if found is not None:
        return found
    overrides: dict[str, Any] = {}
    rules: dict[str, Rule] = {}
    for a in attrs.fields(cls):
        rule = a.metadata.get(RULE_KEY)
        if rule is None:
            raise TypeError(f"{cls.__name__}.{a.name} has no wire rule (declare it with wire())")
        name = camel(a.name)
        rules[name] = rule
        overrides[a.name] = override(rename=name, struct_hook=_hook(rule, name))
    lenient = ignores_unknown_fields(cls)
    structure: Callable[[Mapping[str, Any], type], Any] = make_dict_structure_fn(
        cls, _converter, _cattrs_forbid_extra_keys=not lenient, **overrides)
    found = _Parser(frozenset(rules), tuple(getattr(cls, "READ_ONLY", ())), lenient, rules,
                    structure,
                    tuple(r for r in getattr(cls, "RELATIONS", ()) if isinstance(r, Requires)))
    _PARSERS[cls] = found
    return found


def ignores_unknown_fields(cls: type) -> bool:
    """Whether the shape ``cls`` ignores fields it does not declare (``IGNORE_UNKNOWN = True``:
    a body another party defines and may extend, e.g. a gateway's envelope) instead of
    refusing them with UNKNOWN_FIELD."""
    return bool(getattr(cls, "IGNORE_UNKNOWN", False))


def parse(cls: type[T], payload: Any, *, where: str | None = None) -> T:
    """``payload`` (parsed JSON) as an instance of the shape ``cls``, or ValidationError.

    Order of the checks: the body is an object; read-only fields (READ_ONLY_FIELD); unknown
    fields (UNKNOWN_FIELD, unless the shape ignores them); then each field's rule. ``where``
    names a nested object (``nodes[0]``) in the error's field and detail."""
    parser = _PARSERS.get(cls) or _parser(cls)
    if type(payload) is not dict and not isinstance(payload, Mapping):
        if where is None:
            raise ValidationError("the body must be a JSON object", field=None)
        raise ValidationError(f"{where} must be an object", field=where)
    if not parser.lenient and not parser.names.issuperset(payload):  # rare: one set test first
        _refuse_fields(parser, payload, where)
    try:
        shape = parser.structure(payload, cls)
        for relation in parser.relations:
            relation.check(shape)
        return typing.cast(T, shape)
    except KeyError as exc:  # a required field is absent: its rule says what it needs
        name = exc.args[0]
        try:
            parser.rules[name].check(MISSING, name)
        except ValidationError as err:
            raise _nested(err, where) from None
        raise  # a rule that accepts absence has a default; this is a bug, not bad input
    except ValidationError as err:
        if where is None:
            raise
        raise _nested(err, where) from None
    except ForbiddenExtraKeysError as exc:  # checked above; kept for safety
        raise ValidationError(f"unknown field(s) {sorted(exc.extra_fields)}",
                              code="UNKNOWN_FIELD") from None


def _refuse_fields(parser: _Parser, payload: Mapping[str, Any], where: str | None) -> None:
    for name in parser.read_only:
        if name in payload:
            raise ValidationError(f"{name} cannot be changed", field=_at(where, name),
                                  code="READ_ONLY_FIELD")
    for name in payload:
        if name not in parser.names:
            suffix = "" if where is None else f" in {where}"
            raise ValidationError(f"unknown field {name!r}{suffix}", field=_at(where, name),
                                  code="UNKNOWN_FIELD")


def _at(where: str | None, name: str) -> str:
    return name if where is None else f"{where}.{name}"


def _nested(err: ValidationError, where: str | None) -> ValidationError:
    if where is None or (err.field or "").startswith(where):
        return err
    return ValidationError(f"{where}: {err.detail}", field=_at(where, err.field or ""),
                           code=err.code)


@attrs.frozen
class Variants:
    """A body that is one of several shapes, chosen by the value of one field (``key``, its JSON
    name): e.g. an MCP server's ``transportType``, whose transports forbid each other's fields.
    Each shape declares ``key`` as ``Choice((value,))``; the document says ``oneOf``.

    ``case_insensitive``: the key's value is trimmed and lower-cased before the choice (each
    shape's Choice is case-insensitive too). ``infer``: when the key is absent or null, the
    value it stands for is inferred from the other fields (None: none can be); a shape whose
    key may be absent declares it nullable. ``missing``: the error's detail when the key is
    absent and nothing can be inferred (it may say what would have been)."""

    key: str
    shapes: Mapping[str, type]
    case_insensitive: bool = False
    infer: Callable[[Mapping[str, Any]], str | None] | None = None
    missing: str = ""

    def choose(self, payload: Mapping[str, Any]) -> str | None:
        """The shape's value the payload stands for (None: none)."""
        value = payload.get(self.key)
        if value is None and self.infer is not None:
            return self.infer(payload)
        if type(value) is str:
            value = value.strip().lower() if self.case_insensitive else value
            if value in self.shapes:
                return typing.cast(str, value)
        return None

    def parse(self, payload: Any) -> Any:
        if type(payload) is not dict and not isinstance(payload, Mapping):
            raise ValidationError("the body must be a JSON object", field=None)
        value = self.choose(payload)
        if value is None:
            given = payload.get(self.key)
            detail = (f"{self.key} must be one of {', '.join(self.shapes)}" if given is not None
                      or not self.missing else self.missing)
            raise ValidationError(detail, field=self.key)
        return parse(self.shapes[value], payload)

    def schema(self, ref: Callable[[type], dict[str, Any]] = json_schema) -> dict[str, Any]:
        """``oneOf`` the shapes' schemas (``ref``: how a shape is named, e.g. as a component).
        The discriminator is said only when it is exact (values as given, key required)."""
        out: dict[str, Any] = {"oneOf": [ref(shape) for shape in self.shapes.values()]}
        if not self.case_insensitive and self.infer is None:
            out["discriminator"] = {"propertyName": self.key}
        return out
