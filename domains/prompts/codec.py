"""The prompts codec: the one place where prompts become JSON or bytes, and where request bodies
are checked and parsed.

JSON is camelCase with ISO-8601 millisecond ``Z`` timestamps. Stored bytes are that JSON plus a
format version, ``{"v": 1, ...}``: :func:`from_bytes` upgrades older versions on read, so a later
format can be introduced without rewriting the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
from domains.common import (
    optional_text,
    reject_unknown_fields,
    require_object,
    required_text,
)
from domains.errors import ValidationError
from domains.prompts.models import CategoryNames, Prompt, canonical_models

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


# -- request bodies -----------------------------------------------------------------------------
CREATE_FIELDS = ("name", "category", "promptContent", "description", "suitableForModels")
REVISION_FIELDS = ("promptContent",)
PATCH_FIELDS = (
    "name", "category", "promptContent", "description", "suitableForModels", "isActive",
)
#: Fields of the JSON form that a client may send back but never change.
READ_ONLY_FIELDS = ("id", "version", "parentId", "createdAt", "updatedAt")


def parse_create(payload: Any) -> dict[str, Any]:
    """The fields of a new prompt (snake_case), checked; version and activity are the service's."""
    body = require_object(payload)
    reject_unknown_fields(body, CREATE_FIELDS)
    return {
        "name": required_text(body, "name"),
        "category": required_text(body, "category"),
        "prompt_content": required_text(body, "promptContent"),
        "description": optional_text(body, "description"),
        "suitable_for_models": canonical_models(optional_text(body, "suitableForModels")),
    }


def parse_revision(payload: Any) -> dict[str, Any]:
    body = require_object(payload)
    reject_unknown_fields(body, REVISION_FIELDS)
    return {"prompt_content": required_text(body, "promptContent")}


def parse_patch(payload: Any) -> dict[str, Any]:
    """Only the fields given (snake_case). ``description: null`` clears it; a null or blank
    ``suitableForModels`` becomes ``"default"``; name, category and content cannot be blank."""
    body = require_object(payload)
    _reject_read_only(body, READ_ONLY_FIELDS)
    reject_unknown_fields(body, PATCH_FIELDS)
    out: dict[str, Any] = {}
    for field, attr in (("name", "name"), ("category", "category"),
                        ("promptContent", "prompt_content")):
        if field in body:
            out[attr] = required_text(body, field)
    if "description" in body:
        out["description"] = optional_text(body, "description")
    if "suitableForModels" in body:
        out["suitable_for_models"] = canonical_models(optional_text(body, "suitableForModels"))
    if "isActive" in body:
        if not isinstance(body["isActive"], bool):
            raise ValidationError("isActive must be true or false", field="isActive")
        out["is_active"] = body["isActive"]
    return out


def _reject_read_only(body: Mapping[str, Any], fields: tuple[str, ...]) -> None:
    for name in fields:
        if name in body:
            raise ValidationError(f"{name} cannot be changed", field=name, code="READ_ONLY_FIELD")
