"""Browser clients on other origins (``AUTOBYTEUS_CORS_ORIGINS``): off unless origins are given.

Falcon's ``CORSMiddleware`` does the work: its ``process_response`` runs for every answer,
errors included (Falcon calls it after the error handlers), so a refused request is readable by
the page that made it. Added here: ``Vary: Origin`` when the answer depends on the origin (so a
cache does not hand one origin's answer to another), the response headers a client needs to read
(ETag for If-Match, the request id, Retry-After, Location), and preflights that pass the bearer
token check (a browser never sends credentials on a preflight; see ``is_preflight``).
"""

from __future__ import annotations

from typing import Any

import falcon

#: Response headers beyond the CORS-safelisted ones that a browser client may read.
EXPOSED_HEADERS = ("ETag", "Location", "Retry-After", "X-Request-Id", "WWW-Authenticate")
#: How long a browser may cache a preflight's answer (seconds).
PREFLIGHT_MAX_AGE = "600"


def is_preflight(req: falcon.Request) -> bool:
    return req.method == "OPTIONS" and req.get_header("Access-Control-Request-Method") is not None


class Cors(falcon.CORSMiddleware):
    def __init__(self, origins: tuple[str, ...]) -> None:
        super().__init__(allow_origins="*" if origins == ("*",) else origins,
                         expose_headers=EXPOSED_HEADERS)
        self._any_origin = origins == ("*",)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        if not self._any_origin:
            resp.append_header("Vary", "Origin")
        super().process_response(req, resp, resource, req_succeeded)
        if is_preflight(req) and resp.get_header("Access-Control-Allow-Origin") is not None:
            resp.set_header("Access-Control-Max-Age", PREFLIGHT_MAX_AGE)
