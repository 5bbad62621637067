#!/usr/bin/env python3
"""The baseline: a bare Falcon app answering a constant JSON document, served by waitress with the
same thread count, under the same interpreter (and emulation) as the server it is compared with.

    python bare_app.py [--port 0] [--threads N]   (prints "listening on http://host:port")
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import falcon
import waitress


class Constant:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok", "provider": "none", "formatVersion": 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    app = falcon.App()
    app.add_route("/health", Constant())
    server: Any = waitress.create_server(app, host=args.host, port=args.port,
                                         threads=args.threads, ident="bare")

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"listening on http://{server.effective_host}:{server.effective_port}",
          file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
