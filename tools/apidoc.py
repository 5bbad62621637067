"""docs/api.md, the project's API reference, written from the app's own ``GET /openapi.json``.

    python -m tools.apidoc --write      # rewrite docs/api.md
    python -m tools.apidoc              # print it

The document is asked of a real app (the composition root's ``create_app`` over a throwaway
store, with a bearer token configured so that the document says where it is needed), so the
reference says what the server serves; a test fails when docs/api.md differs from what this
writes. The renderer is small and knows the shapes our document uses (JSON Schema 2020-12 as
OpenAPI 3.1 has it: type lists, enums, bounds, patterns, arrays, objects, $ref, oneOf/anyOf).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DOCS_API = Path(__file__).resolve().parents[1] / "docs" / "api.md"
REGENERATE = "python -m tools.apidoc --write"
_METHODS = ("get", "post", "put", "patch", "delete")
#: How deep nested objects are spelled out in a field table.
_MAX_DEPTH = 4


def served_document() -> dict[str, Any]:
    """``GET /openapi.json`` of an app over a throwaway lmdb store, token configured."""
    import falcon.testing

    from web.app import create_app, open_store
    from web.settings import Settings

    with tempfile.TemporaryDirectory(prefix="apidoc-") as data_dir:
        settings = Settings(provider="lmdb", data_dir=data_dir, api_token="documented")
        store = open_store(settings)
        try:
            result = falcon.testing.TestClient(create_app(store, settings)).simulate_get(
                "/openapi.json")
        finally:
            store.close()
    if result.status_code != 200:
        raise RuntimeError(f"GET /openapi.json answered {result.status_code}: {result.text}")
    document: dict[str, Any] = result.json
    return document


class Renderer:
    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        self.components = document.get("components", {})

    # -- schemas -------------------------------------------------------------------------------
    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def type_text(self, schema: dict[str, Any]) -> str:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            return f"[{name}](#schema-{name.lower()})"
        for combinator, word in (("oneOf", "one of"), ("anyOf", "any of")):
            if combinator in schema:
                return f"{word}: " + " \\| ".join(self.type_text(s) for s in schema[combinator])
        if "enum" in schema:
            return "one of " + ", ".join(f"`{_literal(v)}`" for v in schema["enum"])
        if "const" in schema:
            return f"`{_literal(schema['const'])}`"
        types = schema.get("type", "any")
        types = types if isinstance(types, list) else [types]
        words = []
        for kind in types:
            if kind == "array":
                words.append("array of " + self.type_text(schema.get("items", {})))
            elif kind == "string" and "format" in schema:
                words.append(f"string ({schema['format']})")
            else:
                words.append(kind)
        return " or ".join(words)

    @staticmethod
    def constraints(schema: dict[str, Any]) -> str:
        said = []
        for key, word in (("minLength", "length ≥"), ("maxLength", "length ≤"),
                          ("minimum", "≥"), ("maximum", "≤"), ("exclusiveMinimum", ">"),
                          ("exclusiveMaximum", "<"), ("minItems", "items ≥"),
                          ("maxItems", "items ≤"), ("pattern", "pattern"),
                          ("default", "default")):
            if key in schema:
                value = schema[key]
                shown = f"`{_literal(value)}`" if key in ("pattern", "default") else value
                said.append(f"{word} {shown}")
        if schema.get("additionalProperties") is False and "properties" not in schema:
            said.append("no properties")
        text = ", ".join(str(s) for s in said)
        description = schema.get("description")
        both = f"{description}; {text}" if description and text else (description or text)
        return both.replace("|", "\\|").replace("\n", " ")  # a table cell

    def fields(self, schema: dict[str, Any], prefix: str = "",
               depth: int = 0) -> Iterator[tuple[str, str, bool, str]]:
        """(name, type, required, constraints) for every field of an object schema, nested
        objects and arrays of objects spelled out as ``outer.inner`` and ``list[].inner``."""
        if "$ref" in schema or depth > _MAX_DEPTH:
            return
        required = set(schema.get("required", []))
        for name, sub in schema.get("properties", {}).items():
            path = f"{prefix}{name}"
            yield path, self.type_text(sub), name in required, self.constraints(sub)
            yield from self._nested(sub, path, depth)

    def _nested(self, sub: dict[str, Any], path: str,
                depth: int) -> Iterator[tuple[str, str, bool, str]]:
        if "properties" in sub:
            yield from self.fields(sub, f"{path}.", depth + 1)
        items = sub.get("items")
        if isinstance(items, dict) and "properties" in items:
            yield from self.fields(items, f"{path}[].", depth + 1)
        for combinator in ("oneOf", "anyOf"):
            for option in sub.get(combinator, []):
                if "properties" in option:
                    yield from self.fields(option, f"{path}.", depth + 1)

    def body_lines(self, schema: dict[str, Any]) -> list[str]:
        """A body's shape: its type, then a table of its fields when it is an object."""
        lines = [f"Type: {self.type_text(schema)}."]
        shown = schema
        if shown.get("type") == "array" and isinstance(shown.get("items"), dict):
            shown = shown["items"]
            prefix = "[]."
        else:
            prefix = ""
        rows = list(self.fields(shown, prefix))
        if rows:
            if shown.get("additionalProperties") is False:
                lines[0] += " No other fields."
            lines += ["", "| field | type | required | constraints |", "|---|---|---|---|"]
            lines += [f"| `{n}` | {t} | {'yes' if r else 'no'} | {c} |" for n, t, r, c in rows]
        return lines

    # -- the document ------------------------------------------------------------------------------
    def render(self) -> str:
        info = self.doc.get("info", {})
        out = [
            f"# {info.get('title', 'API')}: API reference",
            "",
            f"<!-- generated by `{REGENERATE}` from the app's GET /openapi.json: do not edit -->",
            "",
            f"OpenAPI {self.doc.get('openapi')}, API version {info.get('version')}. "
            f"{info.get('description', '')}",
            "",
            "The live document is `GET /openapi.json`. Every error has the body "
            "[Error](#schema-error) `{code, detail, field}`. When `AUTOBYTEUS_API_TOKEN` is set, "
            "every operation not marked \"no token\" needs `Authorization: Bearer <token>` "
            "(401 otherwise); without it, no operation answers 401.",
            "",
            "## Operations",
            "",
        ]
        operations = list(self.operations())
        for path, method, operation in operations:
            anchor = _anchor(method, path)
            out.append(f"- [`{method.upper()} {path}`](#{anchor}): {operation.get('summary', '')}")
        for path, method, operation in operations:
            out += [""] + self.operation(path, method, operation)
        schemas = self.components.get("schemas", {})
        if schemas:
            out += ["", "## Schemas"]
            for name, schema in schemas.items():
                out += ["", f'<a id="schema-{name.lower()}"></a>', f"### {name}", ""]
                out += self.body_lines(schema)
        return "\n".join(out).rstrip("\n") + "\n"

    def operations(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for path, item in self.doc.get("paths", {}).items():
            for method in _METHODS:
                if method in item:
                    yield path, method, item[method]

    def operation(self, path: str, method: str, operation: dict[str, Any]) -> list[str]:
        out = [f'<a id="{_anchor(method, path)}"></a>',
               f"## `{method.upper()} {path}`", ""]
        if operation.get("summary"):
            out += [operation["summary"] + ".", ""]
        if operation.get("description"):
            out += [operation["description"], ""]
        notes = [f"operationId `{operation['operationId']}`"] if "operationId" in operation else []
        if operation.get("security") == []:
            notes.append("no token")
        if notes:
            text = "; ".join(notes)
            out += [text[0].upper() + text[1:] + ".", ""]
        parameters = [self.resolve(p) for p in operation.get("parameters", [])]
        if parameters:
            out += ["| parameter | in | type | required | constraints |", "|---|---|---|---|---|"]
            for p in parameters:
                schema = p.get("schema", {})
                out.append(f"| `{p['name']}` | {p['in']} | {self.type_text(schema)} | "
                           f"{'yes' if p.get('required') else 'no'} | "
                           f"{self.constraints({**schema, **_description(p)})} |")
            out.append("")
        body = operation.get("requestBody")
        if body:
            body = self.resolve(body)
            for media, content in body.get("content", {}).items():
                required = "required" if body.get("required") else "optional"
                out += [f"Request body ({media}, {required}):", ""]
                out += self.body_lines(content.get("schema", {})) + [""]
        out += ["| status | meaning | body |", "|---|---|---|"]
        detailed = []
        for status, response in operation.get("responses", {}).items():
            error = response.get("$ref") == "#/components/responses/Error"
            response = self.resolve(response)
            contents: list[dict[str, Any]] = list(response.get("content", {}).values())
            schema = contents[0].get("schema") if contents else None
            shown = "[Error](#schema-error)" if error else (
                self.type_text(schema) if schema else "none")
            out.append(f"| {status} | {response.get('description', '')} | {shown} |")
            if schema and not error and status.startswith("2") and "$ref" not in schema:
                detailed.append((status, schema))
        shown_as: list[tuple[str, dict[str, Any]]] = []
        for status, schema in detailed:
            same = next((earlier for earlier, seen in shown_as if seen == schema), None)
            if same is not None:
                out += ["", f"Answer {status}: the same shape as {same}."]
                continue
            shown_as.append((status, schema))
            out += ["", f"Answer {status}:", ""] + self.body_lines(schema)
        return out


def _description(parameter: dict[str, Any]) -> dict[str, Any]:
    return {"description": parameter["description"]} if parameter.get("description") else {}


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _anchor(method: str, path: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in path.strip("/"))
    return f"op-{method}-{'-'.join(filter(None, cleaned.split('-')))}".lower()


def render(document: dict[str, Any] | None = None) -> str:
    """The Markdown reference of ``document`` (default: what the app serves now)."""
    return Renderer(document if document is not None else served_document()).render()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.apidoc", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {DOCS_API.name}")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        DOCS_API.write_text(text, encoding="utf-8")
        print(f"wrote {DOCS_API}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
