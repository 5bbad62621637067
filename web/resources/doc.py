"""Small builders for the OpenAPI operations that resource modules declare beside their routes.

Body and answer schemas are not written here: :func:`schema` names a shape or record class
(domains/shapes.py) as a component, and :func:`components` generates the schemas of every class
named, so the document says what validation enforces.
"""

from __future__ import annotations

from typing import Any

from domains.shapes import Rule, json_schema

STR = {"type": "string"}
NSTR = {"type": ["string", "null"]}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
STR_LIST = {"type": "array", "items": STR}
STR_MAP = {"type": "object", "additionalProperties": STR}
ERROR = {"$ref": "#/components/responses/Error"}


def obj(properties: dict[str, Any], required: list[str] | None = None,
        additional: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": additional}
    if required:
        schema["required"] = required
    return schema


def page_of(item: dict[str, Any]) -> dict[str, Any]:
    return obj({"items": {"type": "array", "items": item}, "nextCursor": NSTR},
               ["items", "nextCursor"])


def json_body(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"application/json": {"schema": schema}}}
    out["description"] = description or "the answer"
    return out


#: The classes the document names as components, by name (filled as resource modules load).
_COMPONENTS: dict[str, type] = {}


def schema(cls: type) -> dict[str, Any]:
    """A reference to the component schema of a request shape or record class."""
    known = _COMPONENTS.setdefault(cls.__name__, cls)
    if known is not cls:
        raise TypeError(f"two classes named {cls.__name__} in the document")
    return {"$ref": f"#/components/schemas/{cls.__name__}"}


def components() -> dict[str, Any]:
    """The JSON Schema of every class :func:`schema` named, generated from its declaration."""
    return {name: json_schema(cls) for name, cls in sorted(_COMPONENTS.items())}


def query(name: str, schema: dict[str, Any] | Rule | None = None, required: bool = False,
          description: str = "") -> dict[str, Any]:
    """A query parameter; ``schema`` may be a shape rule (its JSON Schema is used). An optional
    parameter given empty (``?name=``) counts as absent, so its schema also allows ``""``."""
    if isinstance(schema, Rule):
        schema = schema.schema()
        if not required:
            schema = {"anyOf": [schema, {"type": "string", "maxLength": 0}]}
    param = {"name": name, "in": "query", "required": required, "schema": schema or STR}
    if description:
        param["description"] = description
    return param


def path_param(name: str, rule: Rule | None = None) -> dict[str, Any]:
    """A path parameter, any string unless a shape rule says more (its JSON Schema is used)."""
    return {"name": name, "in": "path", "required": True,
            "schema": STR if rule is None else rule.schema()}


LIST_PARAMS = [{"$ref": "#/components/parameters/limit"},
               {"$ref": "#/components/parameters/cursor"}]
IF_MATCH = {"$ref": "#/components/parameters/ifMatch"}


def op(
    op_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    errors: tuple[str, ...] = ("400",),
) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": op_id, "summary": summary}
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": body}}}
    all_responses = dict(responses)
    # Every operation here may be refused by the bearer token (401); a body can be malformed
    # (400), too large (413) or of another type (415). build_document() adds 503 and 507.
    implied = ["401"]
    if body is not None:
        implied += ["400", "413", "415"]
    for code in (*errors, *implied):
        all_responses.setdefault(code, ERROR)
    operation["responses"] = all_responses
    return operation
