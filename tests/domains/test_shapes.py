"""domains/shapes.py: what a declared shape accepts and refuses, and that its JSON Schema says
the same (the strict fuzz test checks it over the whole API; these are the framework's cases)."""

from __future__ import annotations

import datetime as dt
import re
import sys
from typing import Any, ClassVar

import attrs
import jsonschema_rs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domains.errors import ValidationError
from domains.shapes import (
    BLANK_PATTERN,
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
    Text,
    TextList,
    TextMap,
    Timestamp,
    Unset,
    Variants,
    json_schema,
    parse,
    wire,
)


@attrs.frozen
class Item:
    label: str = wire(Text())
    kind: str = wire(Choice(("A", "B")))


@attrs.frozen(kw_only=True)
class Sample:
    READ_ONLY: ClassVar[tuple[str, ...]] = ("id",)
    name: str = wire(Text())
    agent_id: str = wire(Text(max_bytes=4))
    note: str | None = wire(OptionalText(trim=True), default=None)
    kind: str | None = wire(Choice(("file", "image"), case_insensitive=True, nullable=True),
                            default=None)
    on: bool | Unset = wire(Flag(), default=UNSET)
    tags: list[str] = wire(TextList(), default=attrs.Factory(list))
    items: list[Item] = wire(Many(Item), default=attrs.Factory(list))


def refusal(payload: Any) -> tuple[str, str | None]:
    with pytest.raises(ValidationError) as err:
        parse(Sample, payload)
    return err.value.code, err.value.field


def test_accepts_and_normalises() -> None:
    got = parse(Sample, {"name": "n", "agentId": "ab", "note": "  ", "kind": " IMAGE ",
                         "tags": None, "items": [{"label": "x", "kind": "B"}]})
    assert got == Sample(name="n", agent_id="ab", note=None, kind="image", tags=[],
                         items=[Item("x", "B")])
    assert got.on is UNSET


@pytest.mark.parametrize("payload, expected", [
    ([], ("VALIDATION_ERROR", None)),
    ({"agentId": "a"}, ("VALIDATION_ERROR", "name")),
    ({"name": " \u3000\n", "agentId": "a"}, ("VALIDATION_ERROR", "name")),
    ({"name": 5, "agentId": "a"}, ("VALIDATION_ERROR", "name")),
    ({"name": "n", "agentId": "\u00e9\u00e9\u00e9"}, ("VALIDATION_ERROR", "agentId")),  # 6 bytes
    ({"name": "n", "agentId": "a", "extra": 1}, ("UNKNOWN_FIELD", "extra")),
    ({"name": "n", "agentId": "a", "id": "1"}, ("READ_ONLY_FIELD", "id")),
    ({"name": "n", "agentId": "a", "on": 1}, ("VALIDATION_ERROR", "on")),  # no coercion
    ({"name": "n", "agentId": "a", "on": "true"}, ("VALIDATION_ERROR", "on")),
    ({"name": "n", "agentId": "a", "kind": "pdf"}, ("VALIDATION_ERROR", "kind")),
    ({"name": "n", "agentId": "a", "tags": ["a", 1]}, ("VALIDATION_ERROR", "tags")),
    ({"name": "n", "agentId": "a", "note": 3}, ("VALIDATION_ERROR", "note")),
    ({"name": "n", "agentId": "a", "items": {}}, ("VALIDATION_ERROR", "items")),
    ({"name": "n", "agentId": "a", "items": [5]}, ("VALIDATION_ERROR", "items[0]")),
    ({"name": "n", "agentId": "a", "items": [{"label": "x", "kind": "A", "z": 1}]},
     ("UNKNOWN_FIELD", "items[0].z")),
    ({"name": "n", "agentId": "a", "items": [{"label": "x", "kind": "A"}, {"kind": "A"}]},
     ("VALIDATION_ERROR", "items[1].label")),
    ({"name": "n", "agentId": "a", "items": [{"label": "x", "kind": "a"}]},
     ("VALIDATION_ERROR", "items[0].kind")),
])
def test_refusals_name_the_field(payload: Any, expected: tuple[str, str | None]) -> None:
    assert refusal(payload) == expected


def test_schema_says_the_rules() -> None:
    schema = json_schema(Sample)
    assert schema["required"] == ["name", "agentId"]
    assert schema["additionalProperties"] is False
    agent = schema["properties"]["agentId"]
    assert (agent["maxLength"], agent["x-maxUtf8Bytes"], agent["format"]) == (4, 4, "utf8-max-4")
    assert schema["properties"]["items"]["items"] == json_schema(Item)
    assert json_schema(Item)["properties"]["kind"] == {"type": "string", "enum": ["A", "B"]}


@given(st.text(max_size=8) | st.sampled_from(["file", " FiLe\t", "IMAGE", "images", "\x85file"]))
def test_case_insensitive_pattern_matches_what_choice_accepts(value: str) -> None:
    rule = Choice(("file", "image"), case_insensitive=True)
    pattern = re.compile(rule.schema()["pattern"])
    try:
        rule.check(value, "kind")
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == (pattern.search(value) is not None)


def test_non_blank_pattern_is_exactly_python_strip() -> None:
    """Over every code point: the pattern finds a character exactly when str.strip() keeps
    one (the document's non-blank rule is the server's)."""
    pattern = re.compile(NON_BLANK_PATTERN)
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        assert (pattern.search(char) is not None) == bool(char.strip()), hex(code)


def test_blank_pattern_is_exactly_python_strip() -> None:
    """Over every code point, alone and twice: the pattern matches exactly the strings that
    str.strip() empties (an optional id counted as absent), and the empty string."""
    pattern = re.compile(BLANK_PATTERN)
    assert pattern.search("")
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        for text in (char, char + char, f" {char}"):
            assert (pattern.search(text) is not None) == (not text.strip()), hex(code)


@attrs.frozen(kw_only=True)
class Counted:
    count: int = wire(Integer(minimum=0))
    cost: float | int = wire(Number(minimum=0), default=0)
    env: dict[str, str] = wire(TextMap(), default=attrs.Factory(dict))


@pytest.mark.parametrize("payload, field", [
    ({"count": True}, "count"), ({"count": 1.5}, "count"), ({"count": -1}, "count"),
    ({"count": float("inf")}, "count"), ({"count": -1.0}, "count"),
    ({"count": "1"}, "count"), ({"count": 1, "cost": False}, "cost"),
    ({"count": 1, "cost": -0.5}, "cost"), ({"count": 1, "env": {"a": 1}}, "env"),
    ({"count": 1, "env": []}, "env"),
])
def test_numbers_and_maps_are_strict(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse(Counted, payload)
    assert err.value.field == field


def test_numbers_and_maps_accept() -> None:
    assert parse(Counted, {"count": 0, "cost": 1.5, "env": None}) == Counted(count=0, cost=1.5)
    # JSON Schema's integer is a number without a fraction: 3.0 is the integer 3.
    three = parse(Counted, {"count": 3.0})
    assert three.count == 3 and type(three.count) is int
    assert json_schema(Counted)["properties"]["count"] == {"type": "integer", "minimum": 0}


@attrs.frozen(kw_only=True)
class Local:
    transport: str = wire(Choice(("local",)))
    command: str = wire(Text())


@attrs.frozen(kw_only=True)
class Remote:
    transport: str = wire(Choice(("remote",)))
    url: str = wire(Text())


TRANSPORTS = Variants("transport", {"local": Local, "remote": Remote})


def test_variants_choose_the_shape_by_one_field() -> None:
    assert TRANSPORTS.parse({"transport": "remote", "url": "u"}) == Remote(transport="remote",
                                                                             url="u")
    for payload, code, field in [
        ({"transport": "local", "url": "u"}, "UNKNOWN_FIELD", "url"),  # the other's field
        ({"transport": "ftp"}, "VALIDATION_ERROR", "transport"),
        ({"url": "u"}, "VALIDATION_ERROR", "transport"),
        ([], "VALIDATION_ERROR", None),
    ]:
        with pytest.raises(ValidationError) as err:
            TRANSPORTS.parse(payload)
        assert (err.value.code, err.value.field) == (code, field)
    assert TRANSPORTS.schema()["oneOf"] == [json_schema(Local), json_schema(Remote)]


# -- the second wave's rules (the external channel) ------------------------------------------
@attrs.frozen(kw_only=True)
class Envelope:
    """A body another party defines: unknown fields are ignored, also in its attachments."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    kind: str = wire(Choice(("USER", "GROUP"), case_insensitive=True))
    at: Any = wire(Timestamp())
    meta: dict[str, Any] | None = wire(JsonObject(known={"key": Text()}), default=None)
    size: int | None = wire(Integer(minimum=0, nullable=True), default=None)
    ids: list[str] = wire(TextList(required=True, max_items=2))
    parts: list[Item] = wire(Many(Item), default=attrs.Factory(list))


def test_an_envelope_ignores_unknown_fields_and_checks_known_ones() -> None:
    got = parse(Envelope, {"kind": " user\t", "at": "2026-02-22T10:15:30.5+02:00",
                           "meta": {"key": "k", "other": [1]}, "ids": ["a"], "future": {"x": 1}})
    assert (got.kind, got.meta, got.size, got.ids) == ("USER", {"key": "k", "other": [1]}, None,
                                                       ["a"])
    assert got.at.isoformat() == "2026-02-22T08:15:30.500000+00:00"
    assert parse(Envelope, {"kind": "GROUP", "at": "2026-02-22", "ids": [],
                            "size": None}).at.isoformat() == "2026-02-22T00:00:00+00:00"
    assert json_schema(Envelope)["additionalProperties"] is True
    assert json_schema(Item)["additionalProperties"] is False


@pytest.mark.parametrize("override, field", [
    ({"kind": "ROBOT"}, "kind"), ({"kind": None}, "kind"),
    ({"at": "yesterday"}, "at"), ({"at": "2026-02-22T10:15:30"}, "at"),  # no offset
    ({"at": " 2026-02-22T10:15:30Z"}, "at"), ({"at": "2026-13-01"}, "at"), ({"at": 5}, "at"),
    ({"meta": []}, "meta"), ({"meta": {"key": " "}}, "meta.key"), ({"size": -1}, "size"),
    ({"size": True}, "size"), ({"ids": None}, "ids"), ({"ids": ["a", "b", "c"]}, "ids"),
    ({"ids": [1]}, "ids"),
])
def test_envelope_refusals_name_the_field(override: dict[str, Any], field: str) -> None:
    body = {"kind": "USER", "at": "2026-02-22T10:15:30Z", "ids": [], **override}
    with pytest.raises(ValidationError) as err:
        parse(Envelope, body)
    assert err.value.field == field


def test_upper_case_choice_folds_only_ascii_letters_as_its_pattern_does() -> None:
    rule = Choice(("USER", "GROUP"), case_insensitive=True)
    pattern = re.compile(rule.schema()["pattern"])
    for value in ("user", " User ", "GROUP", "gRoUp\n"):
        assert rule.check(value, "kind") in ("USER", "GROUP") and pattern.search(value)
    for value in ("u\u017fer", "USERS", ""):  # "ſ".upper() == "S", but the pattern says no
        with pytest.raises(ValidationError):
            rule.check(value, "kind")
        assert not pattern.search(value)


def test_timestamp_and_list_schemas_say_the_rules() -> None:
    assert Timestamp().schema() == {"anyOf": [{"type": "string", "format": "date-time"},
                                              {"type": "string", "format": "date"}]}
    assert TextList(required=True, max_items=2).schema() == {
        "type": "array", "items": {"type": "string"}, "maxItems": 2}
    assert Integer(minimum=0, nullable=True).schema() == {"type": ["integer", "null"],
                                                          "minimum": 0}
    assert JsonObject(known={"key": Text()}).schema()["properties"]["key"]["pattern"] == \
        NON_BLANK_PATTERN


# -- second wave: inferred and case-insensitive variants, relations, bounds, timestamps ------------
@attrs.frozen(kw_only=True)
class Pipe:
    transport: str | None = wire(Choice(("pipe",), case_insensitive=True, nullable=True),
                                 default=None)
    command: str = wire(Text())


@attrs.frozen(kw_only=True)
class Socket:
    RELATIONS: ClassVar[tuple[Requires, ...]] = (Requires("key", "cert", Text()),)
    transport: str = wire(Choice(("socket",), case_insensitive=True))
    url: str = wire(Text())
    cert: str | None = wire(OptionalText(trim=True), default=None)
    key: str | None = wire(OptionalText(trim=True), default=None)


INFERRED = Variants("transport", {"pipe": Pipe, "socket": Socket}, case_insensitive=True,
                    infer=lambda body: "pipe" if "command" in body else None,
                    missing="transport is required (or command for a pipe)")


def test_variants_with_an_inferred_case_insensitive_key() -> None:
    assert INFERRED.parse({"command": "x"}) == Pipe(command="x")
    assert INFERRED.parse({"transport": None, "command": "x"}) == Pipe(command="x")
    assert INFERRED.parse({"transport": " SoCKet ", "url": "u"}) == Socket(transport="socket",
                                                                          url="u")
    for payload, field, detail in [
        ({"url": "u"}, "transport", "transport is required (or command for a pipe)"),
        ({"transport": "tube", "command": "x"}, "transport", "transport must be one of pipe, "
                                                             "socket"),
        ({"transport": "socket", "url": "u", "key": "k"}, "key", "key requires cert"),
        ({"transport": "socket", "url": "u", "key": "k", "cert": " "}, "key",
         "key requires cert"),
    ]:
        with pytest.raises(ValidationError) as err:
            INFERRED.parse(payload)
        assert (err.value.field, err.value.detail) == (field, detail)
    assert INFERRED.parse({"transport": "socket", "url": "u", "key": " ", "cert": None}).key \
        is None
    assert "discriminator" not in INFERRED.schema()  # not exact: absent key, any case
    assert INFERRED.schema(ref=lambda cls: {"$ref": cls.__name__})["oneOf"] == [
        {"$ref": "Pipe"}, {"$ref": "Socket"}]


@pytest.mark.parametrize("payload", [
    {"transport": "socket", "url": "u"},
    {"transport": "socket", "url": "u", "key": "k", "cert": "c"},
    {"transport": "socket", "url": "u", "key": "k"},
    {"transport": "socket", "url": "u", "key": "k", "cert": "  "},
    {"transport": "socket", "url": "u", "key": " ", "cert": None},
    {"transport": "socket", "url": "u", "cert": "c"},
    {"command": "x"}, {"transport": "PIPE", "command": "x"}, {"url": "u"},
    {"transport": "pipe", "url": "u"}, {"command": "x", "url": "u"},
])
def test_the_schema_of_variants_and_relations_says_what_parse_accepts(
        payload: dict[str, Any]) -> None:
    validator = jsonschema_rs.validator_for(INFERRED.schema())
    try:
        INFERRED.parse(payload)
        accepted = True
    except ValidationError:
        accepted = False
    assert validator.is_valid(payload) == accepted


@attrs.frozen(kw_only=True)
class Bounded:
    model: str | None = wire(OptionalText(max_bytes=4), default=None)
    cost: float | None = wire(Number(minimum=0, maximum=10, nullable=True), default=None)


@pytest.mark.parametrize("payload, accepted", [
    ({}, True), ({"model": None, "cost": None}, True), ({"model": "ééé"}, False),
    ({"model": "éé"}, True), ({"model": "     "}, False), ({"cost": 10}, True),
    ({"cost": 10.5}, False), ({"cost": -1}, False), ({"cost": "1"}, False),
])
def test_optional_text_bytes_and_number_bounds(payload: dict[str, Any], accepted: bool) -> None:
    validator = jsonschema_rs.validator_for(json_schema(Bounded))
    if accepted:
        parse(Bounded, payload)
    else:
        with pytest.raises(ValidationError):
            parse(Bounded, payload)
    if not (payload.get("model") or "").isascii():  # maxLength counts characters, not bytes
        return
    assert validator.is_valid(payload) == accepted


UTC = dt.UTC


@pytest.mark.parametrize("text, instant", [
    ("2026-02-22", dt.datetime(2026, 2, 22, tzinfo=UTC)),
    ("2026-02-22T10:15:30Z", dt.datetime(2026, 2, 22, 10, 15, 30, tzinfo=UTC)),
    ("2026-02-22t10:15:30.123z", dt.datetime(2026, 2, 22, 10, 15, 30, 123000, tzinfo=UTC)),
    ("2026-02-22T10:15:30.1234567+01:00",
     dt.datetime(2026, 2, 22, 9, 15, 30, 123456, tzinfo=UTC)),
    ("0001-01-01T00:00:00+23:59",  # before the year 1 in UTC: kept in its own offset
     dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=23, minutes=59)))),
    ("2026-02-22T10:15:30", None), ("2026-02-22 10:15:30Z", None), ("2026-02-30", None),
    ("2026-02-22T10:15:30+24:00", None), ("2026-W08-7", None), (" 2026-02-22", None),
    ("20260222", None), ("2026-02-22T10:15Z", None), ("yesterday", None), ("", None),
    ("２０２６-02-22", None), ("2026-02-22T10:15:30Zjunk", None),
])
def test_timestamps_are_rfc_3339_or_a_date_as_the_schema_says(
        text: str, instant: dt.datetime | None) -> None:
    rule = Timestamp()
    if instant is None:
        with pytest.raises(ValidationError) as err:
            rule.check(text, "start")
        assert err.value.field == "start"
    else:
        got = rule.check(text, "start")
        assert got == instant and got.tzinfo is not None
    validator = jsonschema_rs.validator_for(rule.schema(), validate_formats=True)
    assert validator.is_valid(text) == (instant is not None)


def test_a_utc_only_timestamp_refuses_an_instant_before_the_year_1_in_utc() -> None:
    """A value stored and answered in UTC (the channel's receivedAt) cannot hold it: 400, not a
    500 when it is formatted later."""
    assert Timestamp().check("0001-01-01T00:00:00+23:59", "at").year == 1
    with pytest.raises(ValidationError) as err:
        Timestamp(utc_only=True).check("0001-01-01T00:00:00+23:59", "at")
    assert err.value.field == "at"
    assert Timestamp(utc_only=True).check("0001-01-02T00:00:00+23:59", "at").tzinfo is dt.UTC
