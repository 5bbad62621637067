"""The HTTP baseline: a bare Falcon app on waitress that answers every request with a constant
JSON body (it reads and discards a request body, as any POST handler must).

``python -m tools.bench.bare_app [--port 0] [--threads 8] [--workers 1]`` prints ``listening on
http://h:p`` on stderr, like ``python -m web``, and serves until SIGTERM. With ``--workers N`` it
is served as ``autobyteus-server --workers N`` serves: the parent binds the socket and N forked
processes serve it with waitress (without restarts or the rest of the supervision).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
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
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    if args.workers == 1:
        server: Any = waitress.create_server(create_app(), host=args.host, port=args.port,
                                             threads=args.threads, ident="bare")
        host, port = server.effective_host, server.effective_port
        return serve(server, lambda: print(f"listening on http://{host}:{port}",
                                           file=sys.stderr, flush=True))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    sock.setblocking(False)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = serve(waitress.create_server(create_app(), sockets=[sock],
                                                    threads=args.threads, ident="bare"))
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum: int, frame: Any) -> None:
        for child in children:
            os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    host, port = sock.getsockname()[:2]
    print(f"listening on http://{host}:{port}", file=sys.stderr, flush=True)
    for child in children:
        os.waitpid(child, 0)
    return 0


def serve(server: Any, ready: Any = None) -> int:
    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if ready is not None:
        ready()
    try:
        server.run()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
