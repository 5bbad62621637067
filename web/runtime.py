"""A running server's parts: the store, the services, the app and the background workers."""

from __future__ import annotations

import gc
import logging
import threading
from typing import Any

import falcon

from engine import open_store
from engine.base import Store
from web.settings import Settings

log = logging.getLogger("web.runtime")


class Runtime:
    def __init__(self, settings: Settings, store: Store, app: falcon.App, workers: list[Any],
                 metrics: Any = None):
        self.settings = settings
        self.store = store
        self.app = app
        self.workers = workers
        #: web.metrics.Metrics of the app (the server counts shed requests into it).
        self.metrics = metrics
        self._stopped = threading.Event()

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        from domains.registry import build_services
        from web.app import create_app
        from web.metrics import metrics_for, watch_workers

        store = open_store(settings.provider, **settings.store_options())
        try:
            services = build_services(store, settings=settings.domain_options())
            # -- operating the server (issue 18): one Metrics for the app and the workers --
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


def freeze_startup_objects() -> None:
    """Move every object made so far out of the cyclic collector's sight (``gc.freeze()``).

    Called once start-up is done: the modules, the app and its routes, the converters and the
    store (about 36 000 objects) live as long as the process. Left in the oldest generation, each
    full collection walks them all, 8-12 ms with the GIL held on a 2-core machine, which every
    request in flight waits out; frozen, a full collection walks only what requests made since.
    """
    gc.freeze()
