"""waitress, with its limits set deliberately, load shedding, and the API's error body everywhere.

What waitress does by itself, and what is added here:

- Requests that waitress has read wait in its task queue until one of ``threads`` is free; an
  in-app middleware never sees them. So admission happens where they queue: the dispatcher asks
  the ``InflightLimiter`` (web/middleware.py) when a request is ready to be served, and a request
  beyond the limit is answered at once (it jumps the queue) with 503 ``OVERLOADED``, ``Retry-After``
  and ``Connection: close``. Admitted requests therefore wait behind at most ``limit`` others.
- ``connection_limit`` bounds the open connections (beyond it, new ones wait in the kernel's
  listen ``backlog``); ``channel_timeout`` closes idle connections, and here also connections
  whose request has not fully arrived after that long (a slow client trickling bytes, which
  waitress alone would keep open for ever). Both are checked by the server's maintenance, every
  ``cleanup_interval`` seconds.
- The main loop does not spin while a service thread writes its response (see
  ``GuardedChannel._flush_some_if_lockable``).
- Errors that waitress answers itself (headers too large 431, body over waitress's own cap 413,
  an unparsable request 400) get the API's JSON error body instead of waitress's plain text.

None of this has a public seam in waitress, so this is the one module that subclasses or reaches
into waitress's internals; ``WAITRESS_INTERNALS`` lists every one it relies on, and
tests/web/test_waitress_internals.py fails, naming this module, when the installed waitress no
longer has one of them (setup.cfg also keeps waitress below its next major release).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import waitress
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, MultiSocketServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher
from waitress.utilities import Error

from web.middleware import (
    OVERLOADED_CODE,
    OVERLOADED_DETAIL,
    RETRY_AFTER_S,
    InflightLimiter,
)
from web.settings import Settings

log = logging.getLogger("web.serving")


@dataclass(frozen=True)
class Internal:
    """One thing of waitress this module relies on beyond its public API: ``owner.name``, with
    these parameter names when ``params`` is given (a callable), or an attribute that instances
    of ``owner`` carry when ``instance`` is set (set in their ``__init__``)."""

    owner: Any
    name: str
    params: tuple[str, ...] | None = None
    instance: bool = False
    why: str = ""


WAITRESS_INTERNALS: tuple[Internal, ...] = (
    Internal(waitress, "create_server", ("application", "map", "_start", "_sock", "_dispatcher"),
             why="the private _dispatcher argument: our SheddingDispatcher"),
    Internal(ThreadedTaskDispatcher, "add_task", ("self", "task"), why="admission"),
    Internal(ThreadedTaskDispatcher, "set_thread_count", ("self", "count")),
    Internal(ThreadedTaskDispatcher, "shutdown", ("self", "cancel_pending", "timeout")),
    Internal(ThreadedTaskDispatcher, "lock", instance=True, why="jumping the queue"),
    Internal(ThreadedTaskDispatcher, "queue", instance=True, why="a deque, appendleft"),
    Internal(ThreadedTaskDispatcher, "queue_cv", instance=True),
    Internal(HTTPChannel, "error_task_class", why="JsonErrorTask"),
    Internal(HTTPChannel, "parser_class", why="TimedRequestParser"),
    Internal(HTTPChannel, "_flush_some_if_lockable", ("self", "do_close"),
             why="GuardedChannel overrides it"),
    Internal(HTTPChannel, "_flush_some", ("self", "do_close")),
    Internal(HTTPChannel, "service", ("self",), why="_Admitted wraps it"),
    Internal(HTTPChannel, "cancel", ("self",), why="_Admitted wraps it"),
    Internal(HTTPChannel, "request", why="close_trickling: the request still arriving"),
    Internal(HTTPChannel, "will_close"),
    Internal(HTTPChannel, "total_outbufs_len"),
    Internal(HTTPChannel, "requests", instance=True, why="the requests being served"),
    Internal(HTTPChannel, "outbuf_lock", instance=True, why="a Condition"),
    Internal(HTTPChannel, "adj", instance=True),
    Internal(HTTPRequestParser, "__init__", ("self", "adj"), why="TimedRequestParser"),
    Internal(HTTPRequestParser, "error", why="Overloaded is set there"),
    Internal(ErrorTask, "execute", ("self",), why="JsonErrorTask overrides it"),
    Internal(ErrorTask, "set_close_on_finish", ("self",)),
    Internal(ErrorTask, "write", ("self", "data")),
    Internal(ErrorTask, "status"),
    Internal(ErrorTask, "content_length"),
    Internal(ErrorTask, "request", instance=True),
    Internal(ErrorTask, "response_headers", instance=True),
    Internal(Error, "__init__", ("self", "body"), why="Overloaded(detail)"),
    Internal(Error, "code"),
    Internal(Error, "reason"),
    Internal(Error, "body", instance=True),
    Internal(BaseWSGIServer, "channel_class", why="accepting into GuardedChannel"),
    Internal(BaseWSGIServer, "maintenance", ("self", "now"), why="also close_trickling"),
    Internal(BaseWSGIServer, "active_channels", instance=True),
    Internal(BaseWSGIServer, "adj", instance=True),
    Internal(BaseWSGIServer, "effective_host", instance=True, why="listening_address"),
    Internal(BaseWSGIServer, "effective_port", instance=True, why="listening_address"),
    Internal(MultiSocketServer, "map", instance=True, why="its listening servers"),
    Internal(Adjustments, "listen", instance=True,
             why="bind_sockets: the addresses waitress would bind, for worker processes"),
)

#: waitress's own error classes (by status code) -> the API's error code.
_WAITRESS_CODES = {
    400: "BAD_REQUEST",
    413: "PAYLOAD_TOO_LARGE",
    431: "REQUEST_HEADER_FIELDS_TOO_LARGE",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: OVERLOADED_CODE,
}


class Overloaded(Error):
    """Set as a request's error by the dispatcher: waitress then answers it with an error task."""

    code = 503
    reason = "Service Unavailable"


class JsonErrorTask(ErrorTask):
    """waitress's error answer, with the body every other error of the API has."""

    def execute(self) -> None:
        error = self.request.error
        code = _WAITRESS_CODES.get(error.code, "BAD_REQUEST")
        if isinstance(error, Overloaded):
            detail = OVERLOADED_DETAIL
            self.response_headers.append(("Retry-After", str(RETRY_AFTER_S)))
        elif error.code >= 500:
            detail = "internal error"  # waitress's text may carry a traceback: keep it in logs
        else:
            detail = f"{error.reason}: {error.body}"
        body = json.dumps({"code": code, "detail": detail, "field": None}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class TimedRequestParser(HTTPRequestParser):
    """waitress's request parser, stamped with the time the request's first bytes arrived.

    waitress makes one parser per request, when its first bytes are read, and drops it once the
    request is complete: a channel whose ``request`` is older than ``channel_timeout`` holds a
    request that has not fully arrived in that time."""

    def __init__(self, adj: Any) -> None:
        super().__init__(adj)
        self.started = time.monotonic()


class GuardedChannel(HTTPChannel):
    """A connection whose request must arrive whole within ``channel_timeout`` seconds (the
    server's maintenance closes it otherwise, see ``close_trickling``), answering waitress's own
    errors with the API's body, and flushing without spinning the main loop.

    Nothing here runs in ``readable()`` / ``writable()``: the main loop calls both for every
    connection at each turn, under the GIL, so they stay waitress's own.
    """

    error_task_class = JsonErrorTask
    parser_class = TimedRequestParser

    def _flush_some_if_lockable(self, do_close: bool = True) -> None:
        # The main loop flushes a connection whose request is still being served only "if
        # lockable", and otherwise tries again at its next turn. But the connection stays
        # writable, so its next turn is at once: while the service thread holds the buffer's
        # lock (appending its response and sending it itself, or waiting for the GIL in
        # between), the main loop spins through every connection and takes the GIL from the very
        # threads it waits for. Waiting for the lock instead is short: a service thread holds it
        # only to append and send without blocking, and releases it while it waits for a flush
        # (Condition.wait), as waitress's own handle_close already relies on.
        with self.outbuf_lock:
            self._flush_some(do_close=do_close)
            if self.total_outbufs_len < self.adj.outbuf_high_watermark:
                self.outbuf_lock.notify()


def close_trickling(server: Any, now: float | None = None) -> int:
    """Mark for closing every connection of ``server`` whose request started arriving more than
    ``channel_timeout`` seconds ago and is still incomplete (a slow client trickling bytes, which
    waitress alone keeps open for as long as each byte comes within the timeout). Run by the
    server's maintenance, every ``cleanup_interval`` seconds; returns how many were marked."""
    now = time.monotonic() if now is None else now
    timeout = server.adj.channel_timeout
    marked = 0
    for channel in list(server.active_channels.values()):
        request = channel.request
        started = getattr(request, "started", None)
        if (
            started is not None
            and not channel.requests
            and not channel.will_close
            and now - started > timeout
        ):
            log.info("closing a connection whose request did not arrive within %ss", timeout)
            channel.will_close = True  # writable() is then true and handle_write() closes it
            marked += 1
    return marked


def _guard(server: Any) -> None:
    """Make one listening server accept into GuardedChannel and close trickling requests."""
    waitress_maintenance = server.maintenance

    def maintenance(now: float) -> None:
        waitress_maintenance(now)  # idle connections (waitress's own rule)
        close_trickling(server)

    server.channel_class = GuardedChannel
    server.maintenance = maintenance


class _Admitted:
    """A channel's next request, admitted: the limiter is left once it was served."""

    __slots__ = ("channel", "limiter")

    def __init__(self, channel: Any, limiter: InflightLimiter) -> None:
        self.channel = channel
        self.limiter = limiter

    def service(self) -> None:
        try:
            self.channel.service()
        finally:
            self.limiter.leave()

    def cancel(self) -> None:
        try:
            self.channel.cancel()
        finally:
            self.limiter.leave()

    def __repr__(self) -> str:
        return f"<admitted {self.channel!r}>"


class SheddingDispatcher(ThreadedTaskDispatcher):
    """waitress's thread pool, admitting each request through an ``InflightLimiter``."""

    #: Seconds between two warnings about shed requests.
    report_interval = 10.0

    def __init__(self, limiter: InflightLimiter) -> None:
        super().__init__()
        self.limiter = limiter
        self._reported_at = 0.0
        self._reported_count = 0
        self._report_lock = threading.Lock()

    def add_task(self, task: Any) -> None:
        # waitress queues a channel once per request (the main loop when the first request
        # arrives, the service thread for the next one), holding the channel's requests_lock.
        requests = getattr(task, "requests", None)
        request = requests[0] if requests else None
        if request is None or request.error is not None:
            super().add_task(task)  # not ours to count, or already an error answer (cheap)
            return
        if self.limiter.try_enter():
            super().add_task(_Admitted(task, self.limiter))
            return
        request.error = Overloaded(OVERLOADED_DETAIL)
        with self.lock:
            # The answer costs next to nothing: serve it before the admitted ones.
            self.queue.appendleft(task)
            self.queue_cv.notify()
        self._report()

    def _report(self) -> None:
        now = time.monotonic()
        with self._report_lock:
            if now - self._reported_at < self.report_interval:
                return
            shed = self.limiter.shed_count
            log.warning("overloaded: %d request(s) answered 503 since the last report "
                        "(limit %d in flight)", shed - self._reported_count, self.limiter.limit)
            self._reported_at, self._reported_count = now, shed


def waitress_options(settings: Settings, sockets: list[socket.socket] | None = None
                     ) -> dict[str, Any]:
    """Every waitress adjustment this server sets, and why. ``sockets``: listening sockets bound
    already (by the parent of several worker processes), served instead of host and port."""
    where: dict[str, Any] = (
        {"sockets": sockets} if sockets else {"host": settings.host, "port": settings.port})
    return {
        **where,
        "threads": settings.threads,
        "ident": "autobyteus",
        # The body limit is enforced per route (413 with nothing stored); waitress refuses what
        # is far beyond without reading it into the app.
        "max_request_body_size": max(settings.max_body_bytes * 4, 1 << 20),
        "max_request_header_size": settings.max_header_bytes,
        "connection_limit": settings.connection_limit,
        "backlog": settings.backlog,
        "channel_timeout": settings.channel_timeout_s,
        # How often idle and trickling connections are looked for: a few times per timeout, and
        # at least every 5 s (the look is a walk over the open connections, next to nothing).
        "cleanup_interval": max(1, min(5, settings.channel_timeout_s // 3)),
        # poll() has no FD_SETSIZE (1024) ceiling on the descriptors it watches; select() has.
        "asyncore_use_poll": True,
        "clear_untrusted_proxy_headers": True,
        "expose_tracebacks": False,
    }


def create_server(app: Any, settings: Settings, sockets: list[socket.socket] | None = None
                  ) -> Any:
    """A waitress server for ``app`` with the limits of ``settings`` and load shedding, on
    ``sockets`` when given (see web/workers.py), else listening on the settings' host and port."""
    limiter = InflightLimiter(settings.inflight_limit)
    dispatcher = SheddingDispatcher(limiter)
    dispatcher.set_thread_count(settings.threads)
    try:
        server = waitress.create_server(app, _dispatcher=dispatcher,
                                        **waitress_options(settings, sockets))
    except BaseException:
        dispatcher.shutdown(timeout=1)
        raise
    for listening in _listening_servers(server):
        _guard(listening)
    server.limiter = limiter
    # waitress warns of its queue depth at every queued request under load; the dispatcher's
    # periodic "overloaded" warning says what matters instead.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    return server


def _listening_servers(server: Any) -> list[BaseWSGIServer]:
    """One listening socket gives a server, several (a name with IPv4 and IPv6 addresses) a
    MultiSocketServer whose map holds them (beside the connections)."""
    candidates = [server, *getattr(server, "map", {}).values()]
    return [c for c in candidates if isinstance(c, BaseWSGIServer)]


def bind_sockets(settings: Settings) -> list[socket.socket]:
    """Listening sockets for the settings' host and port, bound and listening as waitress itself
    would bind them (every address the host name resolves to), for worker processes to share.
    With port 0 every address gets the port the first one was given."""
    sockets: list[socket.socket] = []
    port = settings.port
    try:
        for family, socktype, proto, sockaddr in Adjustments(
                host=settings.host, port=settings.port).listen:
            sock = socket.socket(family, socktype, proto)
            sockets.append(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((sockaddr[0], port, *sockaddr[2:]))
            port = sock.getsockname()[1]
            sock.listen(settings.backlog)
            # waitress's main loop polls it: accept() must not block a worker that lost the race
            # for a connection to another worker.
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def listening_address(server: Any) -> tuple[str, int]:
    """Where ``server`` (from create_server) listens: its first socket's host and port (the real
    port when 0 was asked for)."""
    first = _listening_servers(server)[0]
    return first.effective_host, first.effective_port
