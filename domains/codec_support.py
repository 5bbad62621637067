"""What every domain codec builds on: camelCase names and a converter with the timestamp format.

Each domain keeps its own converter (the one place its records become bytes or JSON); this module
only holds the pieces they would otherwise each write again.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from domains.common import format_timestamp, parse_timestamp
from domains.shapes import camel as camel  # the JSON name of an attribute, as shapes name it


def _structure_timestamp(value: Any, _: Any) -> _dt.datetime:
    # Stored timestamps are format_timestamp's "YYYY-MM-DDTHH:MM:SS.mmmZ", which fromisoformat
    # reads as UTC in one call; anything else takes parse_timestamp's general path.
    if type(value) is str and len(value) == 24 and value[-1] == "Z":
        try:
            return _dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    return parse_timestamp(value, "timestamp")


def _structure_optional_str(value: Any, _: Any) -> str | None:
    # What cattrs does for ``str | None`` (None, else str(value)), without its union dispatch.
    return None if value is None else str(value)


_TIMESTAMP_TEXT = re.compile(
    r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
#: The field types whose stored JSON value is also their answered one, and the JSON types of it.
_PLAIN_TYPES: dict[Any, tuple[type, ...]] = {
    str: (str,), int: (int,), bool: (bool,), str | None: (str, type(None)), _dt.datetime: (str,),
}


@attrs.frozen
class AnswerShape:
    """What a stored document must be for ``to_json(from_bytes(raw))`` to be that document
    itself: see :func:`answer_shape` and :func:`is_answer_json`."""

    names: tuple[str, ...]
    types: tuple[tuple[type, ...], ...]
    timestamps: tuple[str, ...]


def answer_shape(cls: type) -> AnswerShape | None:
    """For a class registered with :func:`register_camel` whose fields are all plain (str, int,
    bool, ``str | None``, datetime; no validator, no converter), the shape of the documents the
    converter reads and writes back unchanged; None for any other class."""
    attrs.resolve_types(cls)
    names, types, timestamps = [], [], []
    for field in attrs.fields(cls):
        allowed = _PLAIN_TYPES.get(field.type)
        if allowed is None or field.validator is not None or field.converter is not None:
            return None
        names.append(camel(field.name))
        types.append(allowed)
        if field.type is _dt.datetime:
            timestamps.append(camel(field.name))
    return AnswerShape(tuple(names), tuple(types), tuple(timestamps))


def is_answer_json(doc: Mapping[str, Any], shape: AnswerShape) -> bool:
    """``doc`` has exactly the fields of ``shape`` in its order, each value of its exact JSON
    type (the converter's str(), int(), bool() leave those unchanged), and every timestamp is
    what format_timestamp writes of the instant it names (a four-digit year)."""
    if tuple(doc) != shape.names:
        return False
    for value, allowed in zip(doc.values(), shape.types, strict=True):
        if type(value) not in allowed:
            return False
    for name in shape.timestamps:
        text = doc[name]
        if not _TIMESTAMP_TEXT.fullmatch(text):
            return False
        try:
            _dt.datetime.fromisoformat(text)
        except ValueError:
            return False
    return True


def make_converter() -> cattrs.Converter:
    """A converter whose datetimes are ISO-8601 UTC with milliseconds and ``Z``."""
    converter = cattrs.Converter()
    converter.register_unstructure_hook(_dt.datetime, format_timestamp)
    converter.register_structure_hook(_dt.datetime, _structure_timestamp)
    converter.register_structure_hook(str | None, _structure_optional_str)
    return converter


def camel_renames(cls: type) -> dict[str, Any]:
    return {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}


def register_camel(converter: cattrs.Converter, cls: type) -> None:
    """(Un)structure ``cls`` with camelCase field names."""
    renames = camel_renames(cls)
    converter.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, converter, **renames))
    converter.register_structure_hook(cls, make_dict_structure_fn(cls, converter, **renames))


class RecordFormatError(ValueError):
    """Stored bytes this code cannot read (a newer format version, or not a record at all)."""


#: The encoder and decoder of stored records, built once (json.dumps with arguments builds an
#: encoder at every call).
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_decode = json.JSONDecoder().decode


def dump_envelope(doc: Mapping[str, Any], version: int) -> bytes:
    """A record's JSON form with its format version, ``{"v": n, ...}``, as compact UTF-8."""
    return _encode({"v": version, **doc}).encode()


def load_envelope(
    raw: bytes, what: str, version: int, upgrades: Mapping[int, Callable[[dict], dict]]
) -> dict[str, Any]:
    """The JSON form stored by :func:`dump_envelope`, upgraded from older format versions
    (``upgrades[n]`` turns a version-n document into n+1) to ``version``."""
    try:
        if type(raw) is bytes and raw[:2] == b'{"':
            # What dump_envelope wrote: UTF-8 without a BOM. json.loads(bytes) would first
            # guess the encoding, and the decode below is what it then does.
            doc = _decode(raw.decode("utf-8", "surrogatepass"))
        else:
            doc = json.loads(raw)
        found = doc.pop("v")
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise RecordFormatError(f"not a stored {what}: {exc}") from None
    if not isinstance(found, int) or not 1 <= found <= version:
        raise RecordFormatError(f"{what} format version {found!r} is not one this code reads")
    while found < version:
        doc = upgrades[found](doc)
        found += 1
    return doc
