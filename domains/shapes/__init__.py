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
        count: int = wire(Integer(minimum=0))   # also Number, TextList, TextMap, Timestamp,
        nodes: list[Node] = wire(Many(Node), default=attrs.Factory(list))  # Many (nested)

    command = parse(CreateThing, body)       # ValidationError(code, detail, field) on bad input
    schema = json_schema(CreateThing)        # {"type": "object", "properties": ..., ...}

A field without a default is required. A shape refuses fields it does not declare, unless it
says ``IGNORE_UNKNOWN: ClassVar[bool] = True`` (a body another party defines and extends: the
gateway's envelope); its schema then allows additional properties. ``JsonObject`` keeps free
JSON. JSON names are the camelCase of the attribute names. A body that is one of several
shapes by the value of one field is a :class:`Variants`. Rules that relate fields to each other
are listed in the shape's ``RELATIONS`` (:func:`relations`), which the body's schema adds as
``allOf``: a :class:`Requires` (this field needs that one) is checked here, after the fields, and
said with ``if``/``then``; a plain JSON Schema fragment (only these pairs of values, this field
when that one has this value) is checked by the service and only stated here, built from the same
declarations (the channel's bodies, domains/channel/commands.py, are the example). Timestamps are
a :class:`Timestamp`. Query parameters use the same rules (web/resources/doc.py
``query(name, rule)`` documents one, and web/http.py ``query_checked(req, name, rule)`` checks
it), so they too are declared once.

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

Layout: rules.py (the field rules), checking.py (parse, Variants), description.py (json_schema).
Checking stays cheap: each shape's structure function is generated once (cattrs) and cached; the
rule of each field is one small Python call.
"""

from domains.shapes.checking import Variants, ignores_unknown_fields, parse
from domains.shapes.description import json_schema, relations
from domains.shapes.rules import (
    BLANK_PATTERN,
    MISSING,
    NON_BLANK_PATTERN,
    UNSET,
    Choice,
    Flag,
    Integer,
    JsonObject,
    Many,
    Number,
    OptionalText,
    Requires,
    Rule,
    Text,
    TextList,
    TextMap,
    Timestamp,
    Unset,
    camel,
    wire,
)

__all__ = [
    "BLANK_PATTERN", "MISSING", "NON_BLANK_PATTERN", "UNSET", "Choice", "Flag", "Integer",
    "JsonObject", "Many", "Number", "OptionalText", "Requires", "Rule", "Text", "TextList",
    "TextMap", "Timestamp", "Unset", "Variants", "camel", "ignores_unknown_fields", "json_schema",
    "parse", "relations", "wire",
]
