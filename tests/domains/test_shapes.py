"""domains/shapes.py: what a declared shape accepts and refuses, and that its JSON Schema says
the same (the strict fuzz test checks it over the whole API; these are the framework's cases)."""

from __future__ import annotations

import re
import sys
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domains.errors import ValidationError
from domains.shapes import (
    NON_BLANK_PATTERN,
    UNSET,
    Choice,
    Flag,
    Integer,
    Many,
    Number,
    OptionalText,
    Text,
    TextList,
    TextMap,
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


@attrs.frozen(kw_only=True)
class Counted:
    count: int = wire(Integer(minimum=0))
    cost: float | int = wire(Number(minimum=0), default=0)
    env: dict[str, str] = wire(TextMap(), default=attrs.Factory(dict))


@pytest.mark.parametrize("payload, field", [
    ({"count": True}, "count"), ({"count": 1.0}, "count"), ({"count": -1}, "count"),
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
