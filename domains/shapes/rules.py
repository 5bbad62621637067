"""The rules a shape's fields carry: how one JSON value is checked and how it is described."""

from __future__ import annotations

import datetime as _dt
import enum
import re
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from domains.errors import ValidationError

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
#: A string of whitespace only, or empty: what ``OptionalText(normalise=...)`` ids count as absent.
BLANK_PATTERN = f"^[{_SPACE_CLASS}]*$"


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
    max_bytes: int | None = None

    def check(self, value: Any, field: str) -> Any:
        if value is MISSING:
            value = None
        if value is not None:
            if type(value) is not str:
                raise ValidationError(f"{field} must be a string or null", field=field)
            if self.max_bytes is not None and _utf8_len(value) > self.max_bytes:
                raise ValidationError(f"{field} must be at most {self.max_bytes} bytes",
                                      field=field)
            if self.trim:
                value = value.strip() or None
        return value if self.normalise is None else self.normalise(value)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": ["string", "null"]}
        if self.max_bytes is not None:
            out.update(maxLength=self.max_bytes, format=f"utf8-max-{self.max_bytes}")
            out["x-maxUtf8Bytes"] = self.max_bytes
        return out


def _insensitive_pattern(values: Sequence[str]) -> str:
    def letters(value: str) -> str:
        return "".join(
            f"[{c.lower()}{c.upper()}]" if c.lower() != c.upper() else _escape(c) for c in value
        )

    space = f"[{_SPACE_CLASS}]*"
    return f"^{space}(?:{'|'.join(letters(v) for v in values)}){space}$"


def _escape(c: str) -> str:
    return c if c.isalnum() else f"\\u{ord(c):04x}"


#: ASCII letters to lower case, nothing else: what the ``[xX]`` classes of
#: :func:`_insensitive_pattern` match (``str.lower`` would also fold e.g. the Kelvin sign).
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@attrs.frozen
class Choice(Rule):
    """One of ``values``. ``case_insensitive``: trimmed and matched regardless of the case of
    its ASCII letters, giving the declared value (``" agent "`` → ``"AGENT"``). ``nullable``:
    null (or absence) gives None."""

    values: tuple[str, ...]
    case_insensitive: bool = False
    nullable: bool = False
    folded: dict[str, str] = attrs.field(init=False, eq=False, repr=False)

    @folded.default
    def _fold_values(self) -> dict[str, str]:
        return {v.translate(_ASCII_LOWER): v for v in self.values}

    def check(self, value: Any, field: str) -> str | None:
        if self.nullable and (value is None or value is MISSING):
            return None
        if type(value) is str:
            if value in self.values:  # the declared spelling: the common case, and cheap
                return value
            if self.case_insensitive:
                found = self.folded.get(value.strip().translate(_ASCII_LOWER))
                if found is not None:
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
    """A JSON integer (not a boolean) within [minimum, maximum] when given. A number written
    with a zero fraction (``998.0``) is that integer: JSON Schema's ``integer`` says so (it is
    a number with no fractional part), and a client's JSON encoder may write one that way.
    ``nullable``: null (or absence) gives None."""

    minimum: int | None = None
    maximum: int | None = None
    nullable: bool = False

    def check(self, value: Any, field: str) -> int | None:
        if self.nullable and (value is None or value is MISSING):
            return None
        if type(value) is float and value.is_integer():
            value = int(value)
        elif type(value) is not int:
            raise ValidationError(f"{field} is required and must be an integer", field=field)
        if (self.minimum is not None and value < self.minimum) or \
                (self.maximum is not None and value > self.maximum):
            raise ValidationError(f"{field} must be between {self.minimum} and {self.maximum}",
                                  field=field)
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": ["integer", "null"] if self.nullable else "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@attrs.frozen
class Number(Rule):
    """A finite JSON number (integer or decimal; not a boolean), at least ``minimum`` and at
    most ``maximum`` when given. ``nullable``: null (or absence) gives None."""

    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False

    def check(self, value: Any, field: str) -> float | int | None:
        if self.nullable and (value is None or value is MISSING):
            return None
        if type(value) not in (int, float) or value != value or value in (_INF, -_INF):
            raise ValidationError(f"{field} is required and must be a number", field=field)
        if self.minimum is not None and value < self.minimum:
            raise ValidationError(f"{field} must be at least {self.minimum}", field=field)
        if self.maximum is not None and value > self.maximum:
            raise ValidationError(f"{field} must be at most {self.maximum:g}", field=field)
        return typing.cast(float | int, value)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": ["number", "null"] if self.nullable else "number"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


_INF = float("inf")


@attrs.frozen
class Timestamp(Rule):
    """An instant as RFC 3339 gives it (``2026-02-22T10:15:30.123Z``, ``...+01:00``; ``T`` and
    ``Z`` in either case; digits beyond the microsecond dropped), or a full date ``YYYY-MM-DD``
    meaning midnight UTC: what the JSON Schema formats ``date-time`` and ``date`` say, nothing
    looser (no missing offset, no space, no week dates). A leap second (``:60``) is refused.
    The value is an aware datetime in UTC (the same instant), or in its own offset where UTC
    would fall before the year 1; ``utc_only`` refuses such an instant instead (a value that is
    stored and answered in UTC)."""

    utc_only: bool = False

    def check(self, value: Any, field: str) -> _dt.datetime:
        if type(value) is str:
            found = _DATE_TIME.fullmatch(value) or _DATE.fullmatch(value)
            if found is not None:
                try:
                    instant = _instant(found)
                except ValueError:  # a 13th month, an offset of 24 hours
                    pass
                else:
                    try:
                        return instant.astimezone(_dt.UTC)
                    except OverflowError:  # before the year 1 in UTC: kept in its own offset
                        if not self.utc_only:
                            return instant
        raise ValidationError(
            f"{field} must be an RFC 3339 timestamp (2026-02-22T10:15:30.123Z) or a date "
            "YYYY-MM-DD", field=field)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "string", "format": "date-time"},
                          {"type": "string", "format": "date"}]}


_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))")


def _instant(found: re.Match[str]) -> _dt.datetime:
    parts = found.groups()
    year, month, day = int(parts[0]), int(parts[1]), int(parts[2])
    if len(parts) == 3:
        return _dt.datetime(year, month, day, tzinfo=_dt.UTC)
    fraction, sign, off_h, off_m = parts[6], parts[7], parts[8], parts[9]
    tz = _dt.UTC
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError("offset out of range")
        offset = _dt.timedelta(hours=int(off_h), minutes=int(off_m))
        tz = _dt.timezone(-offset if sign == "-" else offset)
    micro = int((fraction or "").ljust(6, "0")[:6])
    return _dt.datetime(year, month, day, int(parts[3]), int(parts[4]), int(parts[5]), micro,
                        tzinfo=tz)


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
    """A list of strings; null or absence gives ``[]`` unless ``required``; at most
    ``max_items`` when given."""

    required: bool = False
    max_items: int | None = None

    def check(self, value: Any, field: str) -> list[str]:
        if (value is None or value is MISSING) and not self.required:
            return []
        if type(value) is not list or not all(type(v) is str for v in value):
            raise ValidationError(f"{field} must be a list of strings", field=field)
        if self.max_items is not None and len(value) > self.max_items:
            raise ValidationError(f"at most {self.max_items} {field} at once", field=field)
        return list(value)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array" if self.required else ["array", "null"],
                               "items": {"type": "string"}}
        if self.max_items is not None:
            out["maxItems"] = self.max_items
        return out


@attrs.frozen
class JsonObject(Rule):
    """Any JSON object, kept as given (``metadata``); null or absence gives None. ``known``:
    rules of some of its keys, checked when present (``metadata.callbackIdempotencyKey``)."""

    known: dict[str, Rule] = attrs.field(factory=dict)

    def check(self, value: Any, field: str) -> dict[str, Any] | None:
        if value is None or value is MISSING:
            return None
        if type(value) is not dict:
            raise ValidationError(f"{field} must be a JSON object", field=field)
        for name, rule in self.known.items():
            if name in value:
                rule.check(value[name], f"{field}.{name}")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": ["object", "null"]}
        if self.known:
            out["properties"] = {name: rule.schema() for name, rule in self.known.items()}
        return out


@attrs.frozen
class Many(Rule):
    """A list of objects of another shape; null or absence gives ``[]``. Errors inside name the
    element: ``nodes[2].memberName``."""

    shape: type

    def check(self, value: Any, field: str) -> list[Any]:
        from domains.shapes.checking import parse  # parsing is built on these rules

        if value is None or value is MISSING:
            return []
        if type(value) is not list:
            raise ValidationError(f"{field} must be a list of objects", field=field)
        return [parse(self.shape, item, where=f"{field}[{i}]") for i, item in enumerate(value)]

    def schema(self) -> dict[str, Any]:
        from domains.shapes.description import json_schema

        return {"type": ["array", "null"], "items": json_schema(self.shape)}


@attrs.frozen
class Requires:
    """A relation between two fields of a shape, listed in its ``RELATIONS``: when ``field`` is
    given (its value is not None), ``other`` must be too (a client key needs its certificate).
    ``given`` is the rule whose JSON values count as given (for fields where blank means absent:
    ``Text()``, a non-blank string); the document says it with ``if``/``then``."""

    field: str
    other: str
    given: Rule

    def check(self, shape: Any) -> None:
        if getattr(shape, self.field) is not None and getattr(shape, self.other) is None:
            name = camel(self.field)
            raise ValidationError(f"{name} requires {camel(self.other)}", field=name)

    def schema(self) -> dict[str, Any]:
        field, other, given = camel(self.field), camel(self.other), self.given.schema()
        return {"if": {"required": [field], "properties": {field: given}},
                "then": {"required": [other], "properties": {other: given}}}


def wire(rule: Rule, *, default: Any = attrs.NOTHING) -> Any:
    """An attrs field checked and described by ``rule``; without ``default`` it is required."""
    return attrs.field(default=default, metadata={RULE_KEY: rule})
