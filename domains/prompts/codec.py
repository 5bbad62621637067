"""The prompts codec: the one place where prompts become JSON or bytes (request bodies are the
shapes of domains/prompts/commands.py).

JSON is camelCase with ISO-8601 millisecond ``Z`` timestamps. Stored bytes are that JSON plus a
format version, ``{"v": 1, ...}``: :func:`from_bytes` upgrades older versions on read, so a later
format can be introduced without rewriting the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domains.codec_support import RecordFormatError as RecordFormatError
from domains.codec_support import (
    answer_shape,
    dump_envelope,
    is_answer_json,
    load_envelope,
    make_converter,
    register_camel,
)
from domains.prompts.models import CategoryNames, Prompt

FORMAT_VERSION = 1

converter = make_converter()
register_camel(converter, Prompt)
register_camel(converter, CategoryNames)

#: Upgrades of stored documents: version n -> a function turning a version-n document into n+1.
_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


# -- records ------------------------------------------------------------------------------------
def to_json(prompt: Prompt) -> dict[str, Any]:
    return converter.unstructure(prompt, Prompt)


def categories_to_json(entries: list[CategoryNames]) -> list[dict[str, Any]]:
    return converter.unstructure(entries, list[CategoryNames])


def to_bytes(prompt: Prompt) -> bytes:
    return dump_envelope(to_json(prompt), FORMAT_VERSION)


def from_bytes(raw: bytes) -> Prompt:
    return converter.structure(load_envelope(raw, "prompt", FORMAT_VERSION, _UPGRADES), Prompt)


_SHAPE = answer_shape(Prompt)


def json_from_bytes(raw: bytes) -> dict[str, Any]:
    """``to_json(from_bytes(raw))``: the stored document itself when it already is exactly that
    (what to_bytes wrote, once upgraded), else through the model, failing as from_bytes fails.

    A single prompt's GET answers this: building the record only to write it back as the same
    JSON was a third of the request's own work."""
    doc = load_envelope(raw, "prompt", FORMAT_VERSION, _UPGRADES)
    if _SHAPE is not None and is_answer_json(doc, _SHAPE):
        return doc
    return to_json(converter.structure(doc, Prompt))
