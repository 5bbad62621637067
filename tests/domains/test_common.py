"""The shared helpers on the hot paths (timestamps, version tags, stored envelopes) give exactly
what their plain definitions give."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import random
import zoneinfo
from typing import Any

import pytest

from domains.codec_support import (
    RecordFormatError,
    dump_envelope,
    load_envelope,
    make_converter,
)
from domains.common import etag_of, format_timestamp, parse_timestamp, to_millis

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
ZONES = [_dt.UTC, _dt.timezone(_dt.timedelta(hours=5, minutes=30)),
         _dt.timezone(_dt.timedelta(hours=-8)), zoneinfo.ZoneInfo("Europe/Paris")]


def _plain_format(ts: _dt.datetime) -> str:
    # ISO 8601 with a four-digit year (strftime's %Y would give "999" for the year 999).
    ts = ts.astimezone(_dt.UTC)
    return f"{ts.year:04d}" + ts.strftime("-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _random_times(n: int, seed: int) -> list[_dt.datetime]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        year = rng.choice([2, 999, 1000, 1969, 1970, 2026, 9998])
        out.append(_dt.datetime(year, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                                rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999_999),
                                tzinfo=rng.choice(ZONES)))
    return out


def test_format_timestamp_is_the_plain_format() -> None:
    for ts in _random_times(20_000, 1):
        assert format_timestamp(ts) == _plain_format(ts), ts
    naive = _dt.datetime(2026, 2, 22, 10, 15, 30, 123_999)  # local time, as astimezone says
    assert format_timestamp(naive) == _plain_format(naive)
    assert format_timestamp(_dt.datetime(2026, 2, 22, 10, 15, 30, 123_999, tzinfo=_dt.UTC)) == \
        "2026-02-22T10:15:30.123Z"
    assert format_timestamp(_dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=_dt.UTC)) == \
        "0999-01-02T03:04:05.000Z"


def test_to_millis_is_the_exact_floor() -> None:
    for ts in _random_times(20_000, 2):
        assert to_millis(ts) == (ts - _EPOCH) // _dt.timedelta(milliseconds=1), ts


def test_stored_timestamps_read_back_as_parse_timestamp_reads_them() -> None:
    converter = make_converter()
    # Years before 1000 included: they are written with four digits and read back.
    for ts in _random_times(5_000, 3):
        text = format_timestamp(ts)
        got = converter.structure(text, _dt.datetime)
        want = parse_timestamp(text, "timestamp")
        assert got == want and got.tzinfo is want.tzinfo, text
    for text in ["2026-02-22", "2026-02-22T10:15:30+02:00", "2026-02-22T10:15:30.123456Z",
                 " 2026-02-22T10:15:30.123Z", "2026-02-22T10:15:30.123z"]:
        assert converter.structure(text, _dt.datetime) == parse_timestamp(text, "timestamp")
    with pytest.raises(Exception):  # noqa: B017 - cattrs wraps the ValidationError
        converter.structure("not a time at all, 24 chZ", _dt.datetime)


def test_optional_strings_structure_as_cattrs_does() -> None:
    converter = make_converter()
    assert converter.structure(None, str | None) is None
    assert converter.structure("x", str | None) == "x"
    assert converter.structure(5, str | None) == "5"


def test_etag_is_the_sha256_of_the_canonical_json() -> None:
    doc = {"b": [1, 2.5, None], "a": "é\u2028", "c": {"z": True, "y": "x"}}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert etag_of(doc) == hashlib.sha256(canonical.encode()).hexdigest()[:32]


def test_envelopes_round_trip_and_read_as_json_loads_reads_them() -> None:
    doc = {"id": "1", "text": "é \u2028 \U0001f600", "n": 3, "f": 0.1, "none": None}
    raw = dump_envelope(doc, 2)
    assert raw == json.dumps({"v": 2, **doc}, separators=(",", ":"),
                             ensure_ascii=False).encode()
    assert load_envelope(raw, "thing", 2, {}) == doc
    upgraded = load_envelope(dump_envelope(doc, 1), "thing", 2, {1: lambda d: {**d, "new": 1}})
    assert upgraded == {**doc, "new": 1}
    # Not what dump_envelope writes: still read as json.loads reads bytes (a BOM, UTF-16).
    assert load_envelope(b"\xef\xbb\xbf" + raw, "thing", 2, {}) == doc
    assert load_envelope(json.dumps({"v": 1, "a": 1}).encode("utf-16"), "thing", 1, {}) == {
        "a": 1}
    for bad in [b"", b"{", b'{"v"', b"[1]", b'{"a": 1}', b'{"v": 3}', b'{"v": "1"}',
                b'{"\xff": 1}', b"null"]:
        with pytest.raises(RecordFormatError):
            load_envelope(bad, "thing", 2, {})


# -- answering a stored prompt as it is ------------------------------------------------------
def _prompt(rng: random.Random) -> Any:
    from domains.prompts.models import Prompt

    def text() -> str:
        return "".join(rng.choice("aé \u2028\"\\\U0001f600z,") for _ in range(rng.randint(0, 12)))

    def when() -> _dt.datetime:
        return _dt.datetime(rng.randint(1000, 9999), rng.randint(1, 12), rng.randint(1, 28),
                            rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
                            rng.randint(0, 999) * 1000, tzinfo=_dt.UTC)

    return Prompt(id=str(rng.randint(1, 10**9)), name=text(), category=text(),
                  prompt_content=text(), version=rng.randint(1, 10**6),
                  parent_id=rng.choice([None, "7"]), is_active=rng.random() < 0.5,
                  description=rng.choice([None, text()]), suitable_for_models=text(),
                  created_at=when(), updated_at=when())


def test_a_stored_prompt_is_answered_as_to_json_of_its_record() -> None:
    from domains.codec_support import is_answer_json
    from domains.prompts import codec

    rng = random.Random(4)
    for _ in range(3_000):
        prompt = _prompt(rng)
        raw = codec.to_bytes(prompt)
        doc = codec.json_from_bytes(raw)
        assert is_answer_json(load_envelope(raw, "prompt", codec.FORMAT_VERSION, {}),
                              codec._SHAPE)  # the model is not built
        assert doc == codec.to_json(prompt)
        assert list(doc) == list(codec.to_json(prompt))


@pytest.mark.parametrize("change", [
    {"createdAt": "2026-02-22T10:15:30.123+00:00"}, {"createdAt": "2026-02-22T10:15:30.123z"},
    {"createdAt": "2026-02-22 10:15:30.123Z"}, {"createdAt": "2026-02-22T10:15:30.1234Z"},
    {"createdAt": "2026-02-22"}, {"createdAt": "0999-02-22T10:15:30.123Z"},
    {"createdAt": "2026-02-30T10:15:30.123Z"}, {"createdAt": "not a time"},
    {"version": "3"}, {"version": True}, {"isActive": 1}, {"name": 5}, {"parentId": 7},
    {"extra": "field"}, {"name": None},
])
def test_any_other_stored_prompt_takes_the_records_path(change: dict[str, Any]) -> None:
    from domains.prompts import codec

    doc = codec.to_json(_prompt(random.Random(5)))
    doc.update(change)
    raw = dump_envelope(doc, codec.FORMAT_VERSION)
    try:
        want: Any = codec.to_json(codec.from_bytes(raw))
    except Exception as exc:  # the record cannot be read: the answer fails alike
        with pytest.raises(type(exc)):
            codec.json_from_bytes(raw)
        return
    got = codec.json_from_bytes(raw)
    assert got == want and list(got) == list(want)


def test_missing_and_reordered_fields_take_the_records_path() -> None:
    from domains.prompts import codec

    doc = codec.to_json(_prompt(random.Random(6)))
    reordered = dict(reversed(list(doc.items())))
    got = codec.json_from_bytes(dump_envelope(reordered, codec.FORMAT_VERSION))
    assert list(got) == list(doc) and got == doc
    del doc["description"]
    with pytest.raises(Exception):  # noqa: B017 - as from_bytes fails
        codec.json_from_bytes(dump_envelope(doc, codec.FORMAT_VERSION))


def test_only_classes_of_plain_fields_have_an_answer_shape() -> None:
    from domains.channel.models import Binding
    from domains.codec_support import answer_shape
    from domains.prompts.models import Prompt

    assert answer_shape(Binding) is None  # a nested route
    shape = answer_shape(Prompt)
    assert shape is not None and shape.timestamps == ("createdAt", "updatedAt")
