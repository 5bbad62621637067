"""The composition root: settings -> store -> services -> app -> server.

Every entry point builds the server through here and nowhere else:

- ``autobyteus-server`` and ``python -m web`` (web/server.py): :meth:`Runtime.start`, then
  :meth:`Runtime.create_server` (load shedding and the deliberate waitress limits of
  web/serving.py);
- ``waitress-serve --call web.app:from_env``: :func:`from_env` (only waitress's own flags apply);
- the tools (tools/common.py): :func:`open_store`;
- the tests: :func:`create_app` over a store they opened, or :meth:`Runtime.start`.

Settings are read once, by web/settings.py; everything below takes them as arguments. The HTTP
application (web/api.py), the domains and waitress are imported only by the steps that use them,
so that opening a store (the tools) imports neither Falcon nor a domain package.
"""

from __future__ import annotations

import atexit
import gc
import logging
import threading
from typing import TYPE_CHECKING, Any

import engine
from web.settings import Settings

if TYPE_CHECKING:
    import falcon

    from domains.registry import Services
    from engine import Store
    from web.metrics import Metrics

log = logging.getLogger("web.app")


def open_store(settings: Settings, *, readonly: bool = False, create: bool = True) -> Store:
    """The store the settings name (provider, where it lives, how it opens)."""
    return engine.open_store(settings.provider, readonly=readonly, create=create,
                             **settings.store_options())


def build_services(store: Store, settings: Settings, *, clock: Any = None) -> Services:
    """Every domain's service over ``store``, configured by ``settings``."""
    from domains.registry import build_services as build

    return build(store, settings=settings.domain_options(), clock=clock)


def create_app(
    store: Store, settings: Settings | None = None, *, services: Any = None, clock: Any = None,
    metrics: Metrics | None = None,
) -> falcon.App:
    """The HTTP application over ``store`` (services built here unless given); no global state,
    no background workers. ``metrics``: the series /metrics answers (made here unless given)."""
    from web.api import build_app
    from web.context import AppContext
    from web.metrics import metrics_for

    settings = settings or Settings()
    if services is None:
        services = build_services(store, settings, clock=clock)
    metrics = metrics or metrics_for(store, services)
    return build_app(AppContext(store=store, settings=settings, services=services), metrics)


class Runtime:
    """A running server's parts: the store, the services, the app and the background workers."""

    def __init__(self, settings: Settings, store: Store, app: falcon.App, workers: list[Any],
                 metrics: Metrics | None = None):
        self.settings = settings
        self.store = store
        self.app = app
        self.workers = workers
        #: The app's metrics (the server counts shed requests into them).
        self.metrics = metrics
        self._stopped = threading.Event()

    @classmethod
    def start(cls, settings: Settings, *, clock: Any = None) -> Runtime:
        """Open the store, build the services and the app, start the background workers."""
        from web.metrics import metrics_for, watch_workers

        store = open_store(settings)
        try:
            services = build_services(store, settings, clock=clock)
            # One Metrics for the app and the background workers.
            metrics = metrics_for(store, services)
            app = create_app(store, settings, services=services, metrics=metrics)
            workers = services.background_workers(settings.ttl_sweep_interval_s)
            watch_workers(metrics, workers)
            for worker in workers:
                worker.start()
        except BaseException:
            store.close()
            raise
        return cls(settings, store, app, workers, metrics)

    def create_server(self, sockets: list[Any] | None = None) -> Any:
        """A listening waitress server for the app, with the settings' limits and shedding (on
        ``sockets`` bound already, when one of several worker processes: web/workers.py)."""
        from web import serving

        server = serving.create_server(self.app, self.settings, sockets)
        limiter = getattr(server, "limiter", None)
        if limiter is not None and self.metrics is not None:
            # Requests shed by the dispatcher (503 OVERLOADED) never reach the app: counted here.
            limiter.shed_listeners.append(self.metrics.count_shed)
        return server

    def stop(self) -> None:
        """Stop the workers, then close the store (flushing what group commit still holds)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for worker in reversed(self.workers):
            try:
                worker.stop()
            except Exception:
                log.exception("stopping %r failed", worker)
        self.store.close()
        if self.metrics is not None:
            self.metrics.close()


def from_env() -> falcon.App:
    """For ``waitress-serve --call web.app:from_env``: open the configured store, start the
    background workers, and return the app."""
    from web.logsetup import configure_logging, log_effective_settings

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    log_effective_settings(settings, log)
    runtime = Runtime.start(settings)
    # waitress-serve owns the process here: close the store (flushing group commit) at its exit.
    atexit.register(runtime.stop)
    freeze_startup_objects()
    return runtime.app


def freeze_startup_objects() -> None:
    """Move every object made so far out of the cyclic collector's sight (``gc.freeze()``).

    Called once start-up is done: the modules, the app and its routes, the converters and the
    store (about 36 000 objects) live as long as the process. Left in the oldest generation, each
    full collection walks them all, 8-12 ms with the GIL held on a 2-core machine, which every
    request in flight waits out; frozen, a full collection walks only what requests made since.
    """
    gc.freeze()
