"""``autobyteus-server`` / ``python -m web``: open the store, start the workers, serve."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from engine import errors as engine_errors
from web.settings import Settings, SettingsError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="autobyteus-server",
        description="Serve the persistence API (settings from the environment; flags win).",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000; 0 = any free)")
    parser.add_argument("--threads", type=int, help="request threads (default 8)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = logging.getLogger("autobyteus-server")
    try:
        settings = Settings.from_env(host=args.host, port=args.port, threads=args.threads)
    except SettingsError as exc:
        print(f"autobyteus-server: {exc}", file=sys.stderr)
        return 2
    # -- operating the server (issue 18): log level and format, and the effective settings --
    from web.logsetup import configure_logging, log_effective_settings

    configure_logging(settings.log_level, settings.log_format)
    log_effective_settings(settings, log)

    from web import serving
    from web.runtime import Runtime, freeze_startup_objects

    try:
        runtime = Runtime.start(settings)
    except (engine_errors.EngineError, OSError) as exc:
        print(f"autobyteus-server: cannot open the {settings.provider} store: {exc}",
              file=sys.stderr)
        return 2
    try:
        # Limits (in flight, connections, backlog, timeouts, header size) are set in
        # web/serving.py, each from a setting.
        server: Any = serving.create_server(runtime.app, settings)
    except OSError as exc:
        runtime.stop()
        print(f"autobyteus-server: cannot listen on {settings.host}:{settings.port}: {exc}",
              file=sys.stderr)
        return 2

    def stop(signum: int, frame: Any) -> None:
        # waitress's run() loop ends on SystemExit and lets in-flight requests finish.
        raise SystemExit(0)

    # -- operating the server (issue 18): requests shed by the dispatcher, in the metrics --
    limiter = getattr(server, "limiter", None)
    if limiter is not None and runtime.metrics is not None:
        limiter.shed_listeners.append(runtime.metrics.count_shed)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Everything made so far lives as long as the process: out of the collector's sight.
    freeze_startup_objects()
    host, port = server.effective_host, server.effective_port
    log.info("serving %s store on http://%s:%s (threads %d, in flight %d, connections %d)",
             settings.provider, host, port, settings.threads, settings.inflight_limit,
             settings.connection_limit)
    # A line for scripts and tests that start us on port 0.
    print(f"listening on http://{host}:{port}", file=sys.stderr, flush=True)
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


if __name__ == "__main__":
    sys.exit(main())
