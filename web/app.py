"""The Falcon application factory.

``create_app(store, settings)`` builds an app with no global state. ``from_env()`` is for
``waitress-serve --call web.app:from_env``: it opens the store named by the environment and starts
the background workers too. Load shedding (503 OVERLOADED) and the deliberate waitress limits
live in web/serving.py, which ``autobyteus-server`` / ``python -m web`` use; under
``waitress-serve`` only waitress's own flags apply.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import falcon

from engine.base import Store
from web import apidocs, errors
from web import metrics as metrics_routes
from web.context import AppContext
from web.cors import Cors
from web.http import encode_json
from web.metrics import Metrics, MetricsResource, metrics_for
from web.middleware import BearerTokenAuth
from web.observe import RequestObserver
from web.openapi import build_document
from web.resources import service
from web.settings import Settings


def resource_modules() -> list[ModuleType]:
    from web.resources import domains as domain_resources

    return [service, *domain_resources.MODULES]


def create_app(
    store: Store, settings: Settings | None = None, *, services: Any = None, clock: Any = None,
    metrics: Metrics | None = None,
) -> falcon.App:
    settings = settings or Settings()
    if services is None:
        from domains.registry import build_services

        services = build_services(store, settings=settings.domain_options(), clock=clock)
    # -- operating the server (issue 18): request ids, access log and request metrics first
    # (they see every answer, errors included), then CORS (before the token check, whose 401
    # a browser page must be able to read); /metrics and /docs are added below.
    metrics = metrics or metrics_for(store, services)
    observer = RequestObserver(metrics, access_log_enabled=settings.access_log,
                               structured=settings.log_format == "json")
    middleware: list[Any] = [observer]
    if settings.cors_origins:
        middleware.append(Cors(settings.cors_origins))
    if settings.api_token:
        middleware.append(BearerTokenAuth(settings.api_token))
    app = falcon.App(middleware=middleware)
    observer.set_router(app._router)  # type: ignore[attr-defined]  # (issue 18)
    # Falcon's own JSON handler and its output, with the encoder built once instead of per answer.
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(
        dumps=encode_json)
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    app.resp_options.secure_cookies_by_default = True
    errors.install(app)
    ctx = AppContext(store=store, settings=settings, services=services)
    modules = resource_modules()
    for module in modules:
        module.add_routes(app, ctx)
    # -- operating the server (issue 18) --
    app.add_route("/metrics", MetricsResource(
        metrics, None if settings.metrics_public else settings.api_token))
    apidocs.add_routes(app)
    app.add_route("/openapi.json", service.OpenApiResource(
        build_document([*modules, metrics_routes, apidocs],
                       secured=bool(settings.api_token))))
    return app


def from_env() -> falcon.App:
    """Open the configured store, start the background workers, and return the app."""
    import atexit

    from web.runtime import Runtime, freeze_startup_objects

    runtime = Runtime.start(Settings.from_env())
    # waitress-serve owns the process here: close the store (flushing group commit) at its exit.
    atexit.register(runtime.stop)
    freeze_startup_objects()
    return runtime.app
