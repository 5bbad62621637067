"""What every domain codec builds on: camelCase names and a converter with the timestamp format.

Each domain keeps its own converter (the one place its records become bytes or JSON); this module
only holds the pieces they would otherwise each write again.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from domains.common import format_timestamp, parse_timestamp


def camel(name: str) -> str:
    """The JSON name of a model attribute: ``created_at`` → ``createdAt``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def make_converter() -> cattrs.Converter:
    """A converter whose datetimes are ISO-8601 UTC with milliseconds and ``Z``."""
    converter = cattrs.Converter()
    converter.register_unstructure_hook(_dt.datetime, format_timestamp)
    converter.register_structure_hook(
        _dt.datetime, lambda value, _: parse_timestamp(value, "timestamp")
    )
    return converter


def camel_renames(cls: type) -> dict[str, Any]:
    return {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}


def register_camel(converter: cattrs.Converter, cls: type) -> None:
    """(Un)structure ``cls`` with camelCase field names."""
    renames = camel_renames(cls)
    converter.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, converter, **renames))
    converter.register_structure_hook(cls, make_dict_structure_fn(cls, converter, **renames))
