"""``autobyteus-server`` / ``python -m web``: the command line around the composition root
(web/app.py): flags, signals, exit codes and the "listening on" line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
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

    try:
        runtime = Runtime.start(settings)
    except (engine_errors.EngineError, OSError) as exc:
        print(f"autobyteus-server: cannot open the {settings.provider} store: {exc}",
              file=sys.stderr)
        return 2
    try:
        # Limits (in flight, connections, backlog, timeouts, header size) are set in
        # web/serving.py, each from a setting.
        server: Any = runtime.create_server()
    except OSError as exc:
        runtime.stop()
        print(f"autobyteus-server: cannot listen on {settings.host}:{settings.port}: {exc}",
              file=sys.stderr)
        return 2

    def stop(signum: int, frame: Any) -> None:
        # waitress's run() loop ends on SystemExit and lets in-flight requests finish.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Everything made so far lives as long as the process: out of the collector's sight.
    freeze_startup_objects()
    host, port = serving.listening_address(server)
    log.info("serving %s store on http://%s:%s (threads %d, in flight %d, connections %d)",
             settings.provider, host, port, settings.threads, settings.inflight_limit,
             settings.connection_limit)
    # A line for scripts and tests that start us on port 0.
    # One write (print() writes the text and its newline apart, and another thread's log line
    # could land between them).
    sys.stderr.write(f"listening on http://{host}:{port}\n")
    sys.stderr.flush()
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
