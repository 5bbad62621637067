"""The HTTP baseline: a bare Falcon app on waitress that answers every request with a constant
JSON body (it reads and discards a request body, as any POST handler must).

``python -m tools.bench.bare_app [--port 0] [--threads 8]`` prints ``listening on http://h:p`` on
stderr, like ``python -m web``, and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import falcon
import waitress

BODY = b'{"status": "ok", "service": "bare"}'


class Constant:
    def __call__(self, req: falcon.Request, resp: falcon.Response, **_: Any) -> None:
        if req.content_length:
            req.bounded_stream.read()
        resp.data = BODY
        resp.content_type = falcon.MEDIA_JSON


def create_app() -> falcon.App:
    app = falcon.App()
    app.add_sink(Constant(), prefix="/")
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench.bare_app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--threads", type=int, default=8)
    args = p.parse_args(argv)
    server: Any = waitress.create_server(create_app(), host=args.host, port=args.port,
                                         threads=args.threads, ident="bare")

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening on http://{server.effective_host}:{server.effective_port}",
          file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
