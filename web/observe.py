"""Per-request observation: the request id, the access-log line and the request metrics.

``RequestObserver`` is the app's first middleware, so its ``process_request`` runs before any
other and its ``process_response`` after every other (and after the error handlers): it sees
the final status, headers and body. The line it logs names the route *template* (never the
path's ids), the status, the body's size, the time taken and the request id; never a body, a
query string, a header value, a token or a signature.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

import falcon

from web import logsetup
from web.metrics import UNMATCHED_ROUTE, Metrics

access_log = logging.getLogger("web.access")

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_ENV = "HTTP_X_REQUEST_ID"
#: A client's request id is kept when it is 1..128 of these characters, otherwise replaced: it
#: goes into logs and an answer's headers, so nothing that could forge a log line or a header.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")


#: Ids made here: 64 random bits per process, then a count (unique, and cheap to make).
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count(1)


def request_id_from(given: str | None) -> str:
    """The client's ``X-Request-Id`` if it is safe to log and echo, else a fresh one."""
    if given is not None and _SAFE_REQUEST_ID.fullmatch(given):
        return given
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


class RequestObserver:
    def __init__(self, metrics: Metrics | None, access_log_enabled: bool = True,
                 structured: bool = False) -> None:
        self._metrics = metrics
        self._log = access_log_enabled
        #: The line's fields also one by one (``http``), for AUTOBYTEUS_LOG_FORMAT=json.
        self._structured = structured
        #: The app's router (``set_router``): names the route of a request refused before
        #: Falcon routed it (a missing token), which has no ``uri_template`` yet.
        self._router: Any = None

    def set_router(self, router: Any) -> None:
        self._router = router

    def _route_of(self, req: falcon.Request) -> str | None:
        route = req.uri_template
        if route is None and self._router is not None:
            found = self._router.find(req.path)
            route = None if found is None else found[3]
        return route

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()
        # The WSGI environ's key, without get_header()'s work to derive it (2 µs a request).
        rid = request_id_from(req.env.get(_REQUEST_ID_ENV))
        req.context.request_id = rid
        resp.set_header(REQUEST_ID_HEADER, rid)
        if self._metrics is not None:
            self._metrics.request_started()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        started = getattr(req.context, "started", None)
        if started is None:  # process_request never ran (it raised before us): nothing to say
            return
        seconds = time.perf_counter() - started
        status = resp.status_code
        route = self._route_of(req)
        if self._metrics is not None:
            self._metrics.request_finished()
            self._metrics.observe_request(route, req.method, status, seconds)
        if self._log and access_log.isEnabledFor(logging.INFO):
            size = _body_bytes(resp)
            route = route or UNMATCHED_ROUTE
            rid = req.context.request_id
            writer = logsetup.access_writer
            if writer is not None:  # the server's logging (web/logsetup.py): the fast way
                writer.access(req.method, route, status, size, seconds, rid)
                return
            extra = None
            if self._structured:
                extra = {"http": {"method": req.method, "route": route, "status": status,
                                  "bytes": size, "duration_ms": round(seconds * 1000.0, 3),
                                  "request_id": rid}}
            access_log.info("%s %s %d %dB %.1fms id=%s", req.method, route, status, size,
                            seconds * 1000.0, rid, extra=extra)


def _body_bytes(resp: falcon.Response) -> int:
    if resp.stream is not None:  # a static file: its length was set from the file's size
        return int(resp.content_length or 0)  # Falcon gives the header's text
    # Renders media once; Falcon keeps the rendered bytes and sends them as they are.
    body = resp.render_body()
    return 0 if body is None else len(body)
