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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log = logging.getLogger("autobyteus-server")
    try:
        settings = Settings.from_env(host=args.host, port=args.port, threads=args.threads)
    except SettingsError as exc:
        print(f"autobyteus-server: {exc}", file=sys.stderr)
        return 2

    import waitress

    from web.runtime import Runtime

    try:
        runtime = Runtime.start(settings)
    except (engine_errors.EngineError, OSError) as exc:
        print(f"autobyteus-server: cannot open the {settings.provider} store: {exc}",
              file=sys.stderr)
        return 2
    try:
        server: Any = waitress.create_server(
            runtime.app,
            host=settings.host,
            port=settings.port,
            threads=settings.threads,
            ident="autobyteus",
            # The body limit is enforced per route (413); waitress refuses what is far beyond.
            max_request_body_size=max(settings.max_body_bytes * 4, 1 << 20),
            clear_untrusted_proxy_headers=True,
        )
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
    host, port = server.effective_host, server.effective_port
    log.info("serving %s store on http://%s:%s", settings.provider, host, port)
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
