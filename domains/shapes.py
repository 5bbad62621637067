"""Wire shapes: each request body declared once, as an attrs class whose fields carry their rule.

From that one declaration come both the checking (a strict cattrs converter: no coercion, unknown
fields refused, missing or blank required fields refused, every error a
:class:`~domains.errors.ValidationError` naming the JSON field) and the JSON Schema of the body
that the OpenAPI document shows (:func:`json_schema`). Answer shapes (the domain records) get
their schema from the same generator: plain attrs fields map by type, and a field may carry a
:class:`Rule` in its metadata to say more (an enum).

Declaring a shape::

    @attrs.frozen(kw_only=True)
    class CreateThing:
        READ_ONLY: ClassVar[tuple[str, ...]] = ("id",)     # refused with READ_ONLY_FIELD
        name: str = wire(Text())                            # required, non-blank
        agent_id: str = wire(Text(max_bytes=255))           # JSON "agentId", UTF-8 byte limit
        kind: str | None = wire(Choice(KINDS, nullable=True), default=None)  # enum imported
        note: str | None | Unset = wire(OptionalText(), default=UNSET)  # PATCH: absent = UNSET
        count: int = wire(Integer(minimum=0))              # also Number, TextList, TextMap,
        nodes: list[Node] = wire(Many(Node), default=attrs.Factory(list))  # Many (nested)

    command = parse(CreateThing, body)       # ValidationError(code, detail, field) on bad input
    schema = json_schema(CreateThing)        # {"type": "object", "properties": ..., ...}

A field without a default is required. JSON names are the camelCase of the attribute names. A
body that is one of several shapes by the value of one field is a :class:`Variants`. Query
parameters use the same rules (web/resources/doc.py ``query(name, rule)`` documents one, and
web/http.py ``query_checked(req, name, rule)`` checks it), so they too are declared once.

Rules JSON Schema cannot say exactly are stated so that a schema-driven fuzzer (schemathesis in
tests/security/test_fuzz_openapi.py) generates only what the server accepts, and so that a reader
sees the rule:

- *non-blank after Unicode strip* (``str.strip()``): a ``pattern`` requiring one character outside
  an explicit class of the 29 characters for which ``str.isspace()`` is true, written out so that
  Python's ``re`` and ECMA-262 regexes (JSON Schema's dialect) read it alike;
- *at most N UTF-8 bytes*: ``maxLength: N`` (a true bound: every character is at least one byte),
  the keyword ``x-maxUtf8Bytes: N`` and ``format: "utf8-max-N"``; the fuzz test registers a
  strategy for each such format that only generates strings within the byte limit;
- *case-insensitive enums* (values trimmed and lower-cased before the check): a ``pattern`` whose
  letters are each a ``[xX]`` class, between optional whitespace, plus ``x-enumCaseInsensitive``.

Checking stays cheap: each shape's structure function is generated once (cattrs) and cached; the
rule of each field is one small Python call.
"""

from __future__ import annotations

import datetime as _dt
import enum
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, override

from domains.errors import ValidationError

T = TypeVar("T")

#: The key of a field's :class:`Rule` in its attrs metadata.
RULE_KEY = "wire"


class Unset(enum.Enum):
    """The value of a PATCH field the body did not give (``None`` is a given JSON null)."""

    UNSET = "UNSET"


UNSET = Unset.UNSET


def camel(name: str) -> str:
    """The JSON name of an attribute: ``created_at`` → ``createdAt``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


#: Every character ``str.strip()`` removes (``str.isspace()``), as a regex class body valid in
#: both Python and ECMA-262.
_SPACE_CLASS = "".join(
    f"\\u{code:04x}" for code in range(sys.maxunicode + 1) if chr(code).isspace()
)
#: A string with at least one character that is not whitespace.
NON_BLANK_PATTERN = f"[^{_SPACE_CLASS}]"


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class Rule:
    """How one field is checked and described. ``check`` gets the JSON value (or :data:`MISSING`
    when a required field is absent) and the JSON field name, and returns the attribute value."""

    def check(self, value: Any, field: str) -> Any:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError


class _Missing(enum.Enum):
    MISSING = "MISSING"


MISSING = _Missing.MISSING


@attrs.frozen
class Text(Rule):
    """A string; non-blank unless ``blank``; at most ``max_bytes`` UTF-8 bytes when given."""

    blank: bool = False
    max_bytes: int | None = None

    def check(self, value: Any, field: str) -> str:
        if type(value) is not str or (not self.blank and not value.strip()):
            what = "a string" if self.blank else "a non-blank string"
            raise ValidationError(f"{field} is required and must be {what}", field=field)
        if self.max_bytes is not None and _utf8_len(value) > self.max_bytes:
            raise ValidationError(f"{field} must be at most {self.max_bytes} bytes", field=field)
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if not self.blank:
            out["pattern"] = NON_BLANK_PATTERN
        if self.max_bytes is not None:
            out.update(maxLength=self.max_bytes, format=f"utf8-max-{self.max_bytes}")
            out["x-maxUtf8Bytes"] = self.max_bytes
        return out


@attrs.frozen
class OptionalText(Rule):
    """A string or null. ``trim``: stripped, and blank becomes None. ``normalise``: applied to
    the value (None included), e.g. the canonical form of a model list."""

    trim: bool = False
    normalise: Callable[[str | None], Any] | None = None

    def check(self, value: Any, field: str) -> Any:
        if value is MISSING:
            value = None
        if value is not None and type(value) is not str:
            raise ValidationError(f"{field} must be a string or null", field=field)
        if self.trim and value is not None:
            value = value.strip() or None
        return value if self.normalise is None else self.normalise(value)

    def schema(self) -> dict[str, Any]:
        return {"type": ["string", "null"]}


def _insensitive_pattern(values: Sequence[str]) -> str:
    def letters(value: str) -> str:
        return "".join(
            f"[{c.lower()}{c.upper()}]" if c.lower() != c.upper() else _escape(c) for c in value
        )

    space = f"[{_SPACE_CLASS}]*"
    return f"^{space}(?:{'|'.join(letters(v) for v in values)}){space}$"


def _escape(c: str) -> str:
    return c if c.isalnum() else f"\\u{ord(c):04x}"


@attrs.frozen
class Choice(Rule):
    """One of ``values``. ``case_insensitive``: trimmed and lower-cased first (the values are
    lower case). ``nullable``: null (or absence) gives None."""

    values: tuple[str, ...]
    case_insensitive: bool = False
    nullable: bool = False

    def check(self, value: Any, field: str) -> str | None:
        if self.nullable and (value is None or value is MISSING):
            return None
        if type(value) is str:
            found = value.strip().lower() if self.case_insensitive else value
            if found in self.values:
                return found
        raise ValidationError(f"{field} must be one of {', '.join(self.values)}", field=field)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any]
        if self.case_insensitive:
            out = {"type": "string", "pattern": _insensitive_pattern(self.values),
                   "x-enumCaseInsensitive": list(self.values)}
        else:
            out = {"type": "string", "enum": list(self.values)}
        if self.nullable:
            return {"anyOf": [out, {"type": "null"}]}
        return out


@attrs.frozen
class Flag(Rule):
    """``true`` or ``false``, nothing else (no 0/1, no strings)."""

    def check(self, value: Any, field: str) -> bool:
        if type(value) is not bool:
            raise ValidationError(f"{field} must be true or false", field=field)
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@attrs.frozen
class Integer(Rule):
    """A JSON integer (not a boolean, not 1.0) within [minimum, maximum] when given."""

    minimum: int | None = None
    maximum: int | None = None

    def check(self, value: Any, field: str) -> int:
        if type(value) is not int:
            raise ValidationError(f"{field} is required and must be an integer", field=field)
        if (self.minimum is not None and value < self.minimum) or \
                (self.maximum is not None and value > self.maximum):
            raise ValidationError(f"{field} must be between {self.minimum} and {self.maximum}",
                                  field=field)
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@attrs.frozen
class Number(Rule):
    """A finite JSON number (integer or decimal; not a boolean), at least ``minimum``."""

    minimum: float | None = None

    def check(self, value: Any, field: str) -> float | int:
        if type(value) not in (int, float) or value != value or value in (_INF, -_INF):
            raise ValidationError(f"{field} is required and must be a number", field=field)
        if self.minimum is not None and value < self.minimum:
            raise ValidationError(f"{field} must be at least {self.minimum}", field=field)
        return typing.cast(float | int, value)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        return out


_INF = float("inf")


@attrs.frozen
class TextMap(Rule):
    """An object of string values (``env``, ``headers``); null or absence gives ``{}``."""

    def check(self, value: Any, field: str) -> dict[str, str]:
        if value is None or value is MISSING:
            return {}
        if type(value) is not dict or not all(type(v) is str for v in value.values()):
            raise ValidationError(f"{field} must be an object of strings", field=field)
        return dict(value)

    def schema(self) -> dict[str, Any]:
        return {"type": ["object", "null"], "additionalProperties": {"type": "string"}}


@attrs.frozen
class TextList(Rule):
    """A list of strings; null or absence gives ``[]``."""

    def check(self, value: Any, field: str) -> list[str]:
        if value is None or value is MISSING:
            return []
        if type(value) is not list or not all(type(v) is str for v in value):
            raise ValidationError(f"{field} must be a list of strings", field=field)
        return list(value)

    def schema(self) -> dict[str, Any]:
        return {"type": ["array", "null"], "items": {"type": "string"}}


@attrs.frozen
class Many(Rule):
    """A list of objects of another shape; null or absence gives ``[]``. Errors inside name the
    element: ``nodes[2].memberName``."""

    shape: type

    def check(self, value: Any, field: str) -> list[Any]:
        if value is None or value is MISSING:
            return []
        if type(value) is not list:
            raise ValidationError(f"{field} must be a list of objects", field=field)
        return [parse(self.shape, item, where=f"{field}[{i}]") for i, item in enumerate(value)]

    def schema(self) -> dict[str, Any]:
        return {"type": ["array", "null"], "items": json_schema(self.shape)}


@attrs.frozen
class Variants:
    """A body that is one of several shapes, chosen by the value of one field (``key``, its JSON
    name): e.g. an MCP server's ``transportType``, whose transports forbid each other's fields.
    Each shape declares ``key`` as ``Choice((value,))``; the document says ``oneOf``."""

    key: str
    shapes: Mapping[str, type]

    def parse(self, payload: Any) -> Any:
        if type(payload) is not dict and not isinstance(payload, Mapping):
            raise ValidationError("the body must be a JSON object", field=None)
        value = payload.get(self.key)
        shape = self.shapes.get(value) if type(value) is str else None
        if shape is None:
            raise ValidationError(f"{self.key} must be one of {', '.join(self.shapes)}",
                                  field=self.key)
        return parse(shape, payload)

    def schema(self) -> dict[str, Any]:
        return {"oneOf": [json_schema(shape) for shape in self.shapes.values()],
                "discriminator": {"propertyName": self.key}}


def wire(rule: Rule, *, default: Any = attrs.NOTHING) -> Any:
    """An attrs field checked and described by ``rule``; without ``default`` it is required."""
    return attrs.field(default=default, metadata={RULE_KEY: rule})


# -- checking -----------------------------------------------------------------------------------
_converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=False)


@attrs.frozen
class _Parser:
    names: frozenset[str]
    read_only: tuple[str, ...]
    rules: dict[str, Rule]
    structure: Callable[[Mapping[str, Any], type], Any]


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
    structure: Callable[[Mapping[str, Any], type], Any] = make_dict_structure_fn(
        cls, _converter, _cattrs_forbid_extra_keys=True, **overrides)
    found = _Parser(frozenset(rules), tuple(getattr(cls, "READ_ONLY", ())), rules, structure)
    _PARSERS[cls] = found
    return found


def parse(cls: type[T], payload: Any, *, where: str | None = None) -> T:
    """``payload`` (parsed JSON) as an instance of the shape ``cls``, or ValidationError.

    Order of the checks: the body is an object; read-only fields (READ_ONLY_FIELD); unknown
    fields (UNKNOWN_FIELD); then each field's rule. ``where`` names a nested object
    (``nodes[0]``) in the error's field and detail."""
    parser = _PARSERS.get(cls) or _parser(cls)
    if type(payload) is not dict and not isinstance(payload, Mapping):
        if where is None:
            raise ValidationError("the body must be a JSON object", field=None)
        raise ValidationError(f"{where} must be an object", field=where)
    if not parser.names.issuperset(payload):  # the refusals are rare: one set test first
        _refuse_fields(parser, payload, where)
    try:
        return typing.cast(T, parser.structure(payload, cls))
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


# -- description --------------------------------------------------------------------------------
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
    field). Unknown properties are not allowed."""
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
            if a.default is attrs.NOTHING:
                required.append(name)
    found = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        found["required"] = required
    _SCHEMAS[cls] = found
    return found
