"""Cross-cutting request handling: the optional bearer token."""

from __future__ import annotations

import hmac

import falcon

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
        given = (req.get_header("Authorization") or "").encode()
        # compare_digest: the time taken does not tell how much of the token was right.
        if not hmac.compare_digest(given, self._expected):
            raise ApiError(
                falcon.HTTP_401, "UNAUTHORIZED", "a valid bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="autobyteus"'},
            )
