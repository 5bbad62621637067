"""``GET /docs``: a browsable reference of ``/openapi.json``, drawn by Swagger UI.

Swagger UI's files come from the ``swagger-ui-bundle-v2`` package (Swagger UI 5, which reads
OpenAPI 3.1) and are served by this server under ``/docs/assets/``: the page loads nothing from
another host, so it works offline and behind a strict proxy.
"""

from __future__ import annotations

from typing import Any

import falcon

ASSETS_PREFIX = "/docs/assets"
ASSETS_TEMPLATE = ASSETS_PREFIX + "/{file}"

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>autobyteus persistence server: API reference</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png" sizes="32x32">
<style>body {{ margin: 0; background: #fafafa; }}</style>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js" charset="utf-8"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "{document}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}});
</script>
</body>
</html>
"""


def assets_directory() -> str:
    from swagger_ui_bundle import swagger_ui_path

    return str(swagger_ui_path)


class Assets:
    """Swagger UI's files under ``ASSETS_PREFIX``, by Falcon's own static route (safe paths,
    content types, ranges). Made at the first request for one: the package is not even
    imported by a server whose /docs nobody opens (it costs start-up time)."""

    def __init__(self) -> None:
        self._route: falcon.routing.StaticRoute | None = None

    def __call__(self, req: falcon.Request, resp: falcon.Response, **kwargs: Any) -> None:
        req.uri_template = ASSETS_TEMPLATE  # a sink has none: name the route in logs, metrics
        if req.method not in ("GET", "HEAD"):
            raise falcon.HTTPMethodNotAllowed(["GET", "HEAD"])
        if self._route is None:
            self._route = falcon.routing.StaticRoute(ASSETS_PREFIX, assets_directory())
        self._route(req, resp)


class DocsPage:
    def __init__(self, document_url: str = "/openapi.json") -> None:
        self._page = PAGE.format(assets=ASSETS_PREFIX, document=document_url).encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.data = self._page


def add_routes(app: falcon.App) -> None:
    app.add_route("/docs", DocsPage())
    app.add_sink(Assets(), ASSETS_PREFIX + "/")


PATHS: dict[str, Any] = {
    "/docs": {
        "get": {
            "summary": "A browsable reference of this document (Swagger UI)",
            "operationId": "docs",
            "security": [],
            "responses": {"200": {"description": "an HTML page",
                                  "content": {"text/html": {"schema": {"type": "string"}}}}},
        }
    },
}
