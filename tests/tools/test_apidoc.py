"""docs/api.md is what tools/apidoc.py writes from the app's GET /openapi.json, and the renderer
says what the document says."""

from __future__ import annotations

from typing import Any

from tools.apidoc import DOCS_API, REGENERATE, Renderer, render, served_document
from web.openapi import documented_routes


def test_docs_api_md_is_generated_from_the_served_document() -> None:
    document = served_document()
    expected = render(document)
    assert DOCS_API.read_text(encoding="utf-8") == expected, (
        f"docs/api.md differs from the app's /openapi.json; regenerate it with: {REGENERATE} "
        "(and commit docs/api.md)"
    )
    for path, method in documented_routes(document):
        assert f"## `{method} {path}`" in expected, (method, path)


SAMPLE: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "T", "version": "9"},
    "paths": {
        "/things/{id}": {
            "put": {
                "summary": "Replace a thing",
                "operationId": "putThing",
                "parameters": [
                    {"$ref": "#/components/parameters/limit"},
                    {"name": "id", "in": "path", "required": True,
                     "schema": {"type": "string", "maxLength": 8}},
                ],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False, "required": ["kind"],
                    "properties": {
                        "kind": {"enum": ["a", "b"]},
                        "tags": {"type": "array", "items": {
                            "type": "object", "properties": {"name": {
                                "type": "string", "pattern": "^(x|y)$"}}}},
                        "owner": {"$ref": "#/components/schemas/Owner"},
                        "note": {"type": ["string", "null"], "description": "free text"},
                    }}}}},
                "responses": {
                    "200": {"description": "replaced", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Owner"}}}},
                    "404": {"$ref": "#/components/responses/Error"},
                },
            },
        },
    },
    "components": {
        "schemas": {
            "Owner": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}}},
            "Error": {"type": "object"},
        },
        "responses": {"Error": {"description": "an error"}},
        "parameters": {"limit": {"name": "limit", "in": "query",
                                 "schema": {"type": "integer", "maximum": 5, "default": 2}}},
    },
}


def test_the_renderer_spells_out_parameters_bodies_and_references() -> None:
    text = Renderer(SAMPLE).render()
    assert "- [`PUT /things/{id}`](#op-put-things-id): Replace a thing" in text
    assert '<a id="op-put-things-id"></a>' in text
    assert "| `limit` | query | integer | no | ≤ 5, default `2` |" in text
    assert "| `id` | path | string | yes | length ≤ 8 |" in text
    assert "Type: object. No other fields." in text
    assert "| `kind` | one of `a`, `b` | yes |  |" in text
    assert "| `tags[].name` | string | no | pattern `^(x\\|y)$` |" in text
    assert "| `owner` | [Owner](#schema-owner) | no |  |" in text
    assert "| `note` | string or null | no | free text |" in text
    assert "| 200 | replaced | [Owner](#schema-owner) |" in text
    assert "| 404 | an error | [Error](#schema-error) |" in text
    assert '<a id="schema-owner"></a>\n### Owner' in text
    assert "| `id` | integer | no | ≥ 1 |" in text
