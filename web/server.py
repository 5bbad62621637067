"""``autobyteus-server`` / ``python -m web``: the command line around the composition root
(web/app.py): flags, signals, exit codes and the "listening on" line."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from engine import errors as engine_errors
from web import serving
from web.app import Runtime, freeze_startup_objects
from web.settings import TABLE, Settings, SettingsError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="autobyteus-server",
        description="Serve the persistence API (settings from the environment; flags win).",
    )
    for entry in TABLE:
        if entry.spec.flag:
            parser.add_argument(
                entry.spec.flag, dest=entry.name, type=entry.kind,
                help=f"{entry.spec.description} (${entry.spec.env}; default {entry.default})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = logging.getLogger("autobyteus-server")
    try:
        settings = Settings.from_env(**vars(args))
    except SettingsError as exc:
        print(f"autobyteus-server: {exc}", file=sys.stderr)
        return 2
    # Log level and format, then the effective settings (secrets masked).
    from web.logsetup import configure_logging, log_effective_settings

    configure_logging(settings.log_level, settings.log_format)
    log_effective_settings(settings, log)
    if settings.workers == 1:
        return serve(settings)
    return supervise(settings)


def supervise(settings: Settings) -> int:
    """``--workers N`` (N > 1): bind here, serve from N worker processes (web/workers.py)."""
    from web.workers import Supervisor

    try:
        sockets = serving.bind_sockets(settings)
    except OSError as exc:
        print(f"autobyteus-server: cannot listen on {settings.host}:{settings.port}: {exc}",
              file=sys.stderr)
        return 2
    metrics_dir = share_metrics()
    preload()
    host, port = sockets[0].getsockname()[:2]

    def announce() -> None:
        logging.getLogger("autobyteus-server").info(
            "serving %s store on http://%s:%s with %d worker processes (each: threads %d, in "
            "flight %d, connections %d)", settings.provider, host, port, settings.workers,
            settings.threads, settings.inflight_limit, settings.connection_limit)
        announce_address(host, port)

    try:
        return Supervisor(settings, sockets, serve, announce=announce).run()
    finally:
        for sock in sockets:
            sock.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def share_metrics() -> str | None:
    """Several workers, one /metrics: unless the operator named a directory, a fresh one for
    prometheus_client's multiprocess mode (set before the library is imported, which reads it
    then); returns it so that it is removed at the end."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    path = tempfile.mkdtemp(prefix="autobyteus-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def announce_address(host: str, port: int) -> None:
    """The line scripts and tests that start us on port 0 read, in one write (print() writes
    the text and its newline apart, and another thread's log line could land between them)."""
    sys.stderr.write(f"listening on http://{host}:{port}\n")
    sys.stderr.flush()


def preload() -> None:
    """Import, before the workers are forked, what each of them imports to build its app (they
    share those pages, and a restarted worker starts sooner); nothing is opened or started."""
    import domains.registry  # noqa: F401
    import web.api  # noqa: F401


def serve(settings: Settings, sockets: list[Any] | None = None,
          on_ready: Callable[[], None] | None = None) -> int:
    """One server process: open the store, serve until SIGTERM / SIGINT, close the store.

    Alone (``sockets`` None) it listens itself and prints the "listening on" line; as one of
    several workers it serves the sockets its parent bound and calls ``on_ready`` instead."""
    log = logging.getLogger("autobyteus-server")
    # From here on SIGTERM unwinds: a stop asked for while the store opens closes it again.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        runtime = Runtime.start(settings)
    except (engine_errors.EngineError, OSError) as exc:
        print(f"autobyteus-server: cannot open the {settings.provider} store: {exc}",
              file=sys.stderr)
        return 2
    try:
        # Limits (in flight, connections, backlog, timeouts, header size) are set in
        # web/serving.py, each from a setting.
        server: Any = runtime.create_server(sockets)
    except OSError as exc:
        runtime.stop()
        print(f"autobyteus-server: cannot listen on {settings.host}:{settings.port}: {exc}",
              file=sys.stderr)
        return 2

    # Everything made so far lives as long as the process: out of the collector's sight.
    freeze_startup_objects()
    if on_ready is None:
        host, port = serving.listening_address(server)
        log.info("serving %s store on http://%s:%s (threads %d, in flight %d, connections %d)",
                 settings.provider, host, port, settings.threads, settings.inflight_limit,
                 settings.connection_limit)
        announce_address(host, port)
    else:
        on_ready()
    try:
        server.run()
    finally:
        try:
            server.close()
        except Exception:
            pass
        runtime.stop()
        log.info("stopped; the store is closed")
    return 0


def _stop(signum: int, frame: Any) -> None:
    # waitress's run() loop ends on SystemExit and lets in-flight requests finish. Once: a second
    # signal must not cut short the closing of the store.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
