"""The Falcon application: middleware, media handling, error mapping, routes and /openapi.json.

``build_app(ctx)`` only assembles; what the app is built over (store, services, settings) is
decided by the composition root, web/app.py.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import falcon

from web import apidocs, errors
from web import metrics as metrics_routes
from web.context import AppContext
from web.cors import Cors
from web.http import encode_json
from web.metrics import Metrics, MetricsResource
from web.middleware import BearerTokenAuth
from web.observe import RequestObserver
from web.openapi import build_document
from web.resources import domains as domain_resources
from web.resources import service


def resource_modules() -> list[ModuleType]:
    return [service, *domain_resources.MODULES]


def build_app(ctx: AppContext, metrics: Metrics) -> falcon.App:
    settings = ctx.settings
    # Request ids, the access log and request metrics first (they see every answer, errors
    # included), then CORS (before the token check, whose 401 a browser page must be able to
    # read); /metrics and /docs are added below.
    observer = RequestObserver(metrics, access_log_enabled=settings.access_log,
                               structured=settings.log_format == "json")
    middleware: list[Any] = [observer]
    if settings.cors_origins:
        middleware.append(Cors(settings.cors_origin_list))
    if settings.api_token:
        middleware.append(BearerTokenAuth(settings.api_token))
    app = falcon.App(middleware=middleware)
    observer.set_router(app._router)
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
    app.add_route("/metrics", MetricsResource(
        metrics, None if settings.metrics_public else settings.api_token))
    apidocs.add_routes(app)
    app.add_route("/openapi.json", service.OpenApiResource(
        build_document([*modules, metrics_routes, apidocs], secured=bool(settings.api_token))))
    return app
