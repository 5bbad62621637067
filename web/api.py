"""The Falcon application: middleware, media handling, error mapping, routes and /openapi.json.

``build_app(ctx)`` only assembles; what the app is built over (store, services, settings) is
decided by the composition root, web/app.py.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import falcon

from web import errors
from web.context import AppContext
from web.http import encode_json
from web.middleware import BearerTokenAuth
from web.openapi import build_document
from web.resources import domains as domain_resources
from web.resources import service


def resource_modules() -> list[ModuleType]:
    return [service, *domain_resources.MODULES]


def build_app(ctx: AppContext) -> falcon.App:
    settings = ctx.settings
    middleware: list[Any] = []
    if settings.api_token:
        middleware.append(BearerTokenAuth(settings.api_token))
    app = falcon.App(middleware=middleware)
    # Falcon's own JSON handler and its output, with the encoder built once instead of per answer.
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(
        dumps=encode_json)
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    app.resp_options.secure_cookies_by_default = True
    errors.install(app)
    modules = resource_modules()
    for module in modules:
        module.add_routes(app, ctx)
    app.add_route("/openapi.json", service.OpenApiResource(
        build_document(modules, secured=bool(settings.api_token))))
    return app
