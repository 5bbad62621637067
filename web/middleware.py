"""Cross-cutting request handling: the optional bearer token, and the in-flight limit."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable

import falcon

from web.cors import is_preflight
from web.errors import ApiError

API_PREFIX = "/rest/api/"
#: Authenticated by the gateway's signature instead of the bearer token (domains.md 7.8).
SIGNED_INGRESS_PATHS = frozenset(
    {
        "/rest/api/channel-ingress/v1/messages",
        "/rest/api/channel-ingress/v1/delivery-events",
    }
)


class BearerTokenAuth:
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        path = req.path.rstrip("/") or "/"
        if not path.startswith(API_PREFIX) or path in SIGNED_INGRESS_PATHS:
            return
        if is_preflight(req):
            return  # a browser never sends credentials on a CORS preflight (web/cors.py)
        given = (req.get_header("Authorization") or "").encode()
        # compare_digest: the time taken does not tell how much of the token was right.
        if not hmac.compare_digest(given, self._expected):
            raise ApiError(
                falcon.HTTP_401, "UNAUTHORIZED", "a valid bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="autobyteus"'},
            )


# -- load shedding ------------------------------------------------------------------------------
#: Seconds a shed client is told to wait (Retry-After).
RETRY_AFTER_S = 1
OVERLOADED_CODE = "OVERLOADED"
OVERLOADED_DETAIL = "the server is at its limit of requests in flight; retry later"


class InflightLimiter:
    """Counts the requests a server holds (being served or waiting for a thread) against a limit.

    The server admits a request with ``try_enter()`` when it is ready to be served and calls
    ``leave()`` once it was answered; a request refused here is answered 503 OVERLOADED with
    Retry-After at once, so the queue, the latency of admitted requests and the memory they hold
    all stay bounded (web/serving.py wires this into waitress, where requests wait for a thread).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the in-flight limit must be at least 1")
        self.limit = limit
        self._inflight = 0
        self._shed = 0
        self._lock = threading.Lock()
        #: Called (without arguments, outside the lock) for each request refused: the metrics.
        self.shed_listeners: list[Callable[[], None]] = []

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def shed_count(self) -> int:
        """Requests refused since the start."""
        return self._shed

    def try_enter(self) -> bool:
        with self._lock:
            if self._inflight < self.limit:
                self._inflight += 1
                return True
            self._shed += 1
        for listener in self.shed_listeners:
            listener()
        return False

    def leave(self) -> None:
        with self._lock:
            if self._inflight > 0:
                self._inflight -= 1
