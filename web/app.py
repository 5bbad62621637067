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
    store: Store, settings: Settings | None = None, *, services: Any = None, clock: Any = None
) -> falcon.App:
    """The HTTP application over ``store`` (services built here unless given); no global state,
    no background workers."""
    from web.api import build_app
    from web.context import AppContext

    settings = settings or Settings()
    if services is None:
        services = build_services(store, settings, clock=clock)
    return build_app(AppContext(store=store, settings=settings, services=services))


class Runtime:
    """A running server's parts: the store, the services, the app and the background workers."""

    def __init__(self, settings: Settings, store: Store, app: falcon.App, workers: list[Any]):
        self.settings = settings
        self.store = store
        self.app = app
        self.workers = workers
        self._stopped = threading.Event()

    @classmethod
    def start(cls, settings: Settings, *, clock: Any = None) -> Runtime:
        """Open the store, build the services and the app, start the background workers."""
        store = open_store(settings)
        try:
            services = build_services(store, settings, clock=clock)
            app = create_app(store, settings, services=services)
            workers = services.background_workers(settings.ttl_sweep_interval_s)
            for worker in workers:
                worker.start()
        except BaseException:
            store.close()
            raise
        return cls(settings, store, app, workers)

    def create_server(self, sockets: list[Any] | None = None) -> Any:
        """A listening waitress server for the app, with the settings' limits and shedding (on
        ``sockets`` bound already, when one of several worker processes: web/workers.py)."""
        from web import serving

        return serving.create_server(self.app, self.settings, sockets)

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


def from_env() -> falcon.App:
    """For ``waitress-serve --call web.app:from_env``: open the configured store, start the
    background workers, and return the app."""
    runtime = Runtime.start(Settings.from_env())
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
