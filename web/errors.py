"""The one place where errors become HTTP answers, all with one body shape.

``{"code": "<UPPER_SNAKE>", "detail": "<human text>", "field": "<name or null>"}``. No request,
however malformed, gets a stack trace: unexpected exceptions are logged and answered with a
generic 500.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from domains import errors as domain_errors
from engine import errors as engine_errors

log = logging.getLogger("web")

_DOMAIN_STATUS: dict[type[domain_errors.DomainError], str] = {
    domain_errors.ValidationError: falcon.HTTP_400,
    domain_errors.NotFoundError: falcon.HTTP_404,
    domain_errors.ConflictError: falcon.HTTP_409,
    domain_errors.PreconditionFailedError: falcon.HTTP_412,
}

#: engine error -> (status, code, retry-after seconds or None)
_ENGINE_STATUS: list[tuple[type[engine_errors.EngineError], str, str, int | None]] = [
    # Before ConflictError, its base: concurrent writers won every attempt; retrying may succeed.
    (engine_errors.WriteConflictError, falcon.HTTP_503, "WRITE_CONFLICT", 1),
    (engine_errors.ConflictError, falcon.HTTP_409, "CONFLICT", None),
    (engine_errors.StoreFullError, falcon.HTTP_507, "INSUFFICIENT_STORAGE", None),
    (engine_errors.BackendUnavailableError, falcon.HTTP_503, "BACKEND_UNAVAILABLE", 1),
    (engine_errors.StoreLockedError, falcon.HTTP_503, "STORE_BUSY", 1),
    (engine_errors.DurabilityError, falcon.HTTP_503, "STORAGE_FAILURE", 5),
    (engine_errors.ReadOnlyError, falcon.HTTP_503, "STORE_READ_ONLY", None),
    (engine_errors.InvalidKeyError, falcon.HTTP_400, "VALIDATION_ERROR", None),
    (engine_errors.StoreClosedError, falcon.HTTP_503, "SHUTTING_DOWN", 1),
]


def error_body(code: str, detail: str, field: str | None = None) -> dict[str, Any]:
    return {"code": code, "detail": detail, "field": field}


class ApiError(falcon.HTTPError):
    """An HTTP error raised by the web layer itself (bad content type, oversize body, auth)."""

    def __init__(
        self, status: str, code: str, detail: str, field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, headers=headers)
        # Not ``code``: falcon.HTTPError has its own (an int).
        self.error_code = code
        self.detail_text = detail
        self.field = field


def _answer(resp: falcon.Response, status: str, body: dict[str, Any]) -> None:
    resp.status = status
    resp.media = body
    resp.content_type = falcon.MEDIA_JSON


def _handle_domain(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    assert isinstance(ex, domain_errors.DomainError)
    status = falcon.HTTP_400
    for cls in type(ex).__mro__:
        if cls in _DOMAIN_STATUS:
            status = _DOMAIN_STATUS[cls]  # type: ignore[index]
            break
    _answer(resp, status, error_body(ex.code, ex.detail, ex.field))


def _handle_engine(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    for cls, status, code, retry_after in _ENGINE_STATUS:
        if isinstance(ex, cls):
            if status == falcon.HTTP_409:
                field = getattr(ex, "field", None)
                _answer(resp, status, error_body(code, str(ex), field))
                return
            if retry_after is not None:
                resp.set_header("Retry-After", str(retry_after))
            log.warning("%s %s: %s: %s", req.method, req.path, type(ex).__name__, ex)
            _answer(resp, status, error_body(code, _public_detail(code), None))
            return
    log.error("%s %s: engine error", req.method, req.path, exc_info=ex)
    _answer(resp, falcon.HTTP_500, error_body("STORAGE_ERROR", "the store failed", None))


def _public_detail(code: str) -> str:
    # Storage errors can carry paths and driver text; the client gets a fixed sentence, the log
    # gets the details.
    return {
        "INSUFFICIENT_STORAGE": "the store is out of space; nothing was written",
        "BACKEND_UNAVAILABLE": "the database is unavailable; retry later",
        "STORE_BUSY": "the store is busy; retry later",
        "STORAGE_FAILURE": "the write could not be made durable; nothing was acknowledged",
        "STORE_READ_ONLY": "the store is read-only",
        "VALIDATION_ERROR": "a key or value is out of the store's limits",
        "SHUTTING_DOWN": "the server is shutting down",
        "WRITE_CONFLICT": "concurrent writes kept conflicting with this one; nothing was written, "
                          "retry later",
    }.get(code, "storage error")


def _code_for_status(status: str) -> str:
    reason = status.split(" ", 1)[1] if " " in status else status
    return reason.upper().replace(" ", "_").replace("-", "_").replace("'", "")


def _handle_http(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    assert isinstance(ex, falcon.HTTPError)
    if ex.headers:
        resp.set_headers(ex.headers)
    status = falcon.code_to_http_status(ex.status)
    if isinstance(ex, ApiError):
        _answer(resp, status, error_body(ex.error_code, ex.detail_text, ex.field))
        return
    code = _code_for_status(status)
    if isinstance(ex, falcon.HTTPRouteNotFound):
        detail = f"no resource at {req.path}"
    elif isinstance(ex, falcon.HTTPMethodNotAllowed):
        detail = f"{req.method} is not allowed on {req.path}"
    else:
        detail = ex.description or ex.title or code
    _answer(resp, status, error_body(code, detail, None))


def _handle_unexpected(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any
) -> None:
    log.error("%s %s failed", req.method, req.path, exc_info=ex)
    _answer(resp, falcon.HTTP_500, error_body("INTERNAL_ERROR", "internal error", None))


def install(app: falcon.App) -> None:
    # Falcon picks the handler of the most specific registered class in the exception's MRO.
    app.add_error_handler(Exception, _handle_unexpected)
    app.add_error_handler(falcon.HTTPError, _handle_http)
    app.add_error_handler(engine_errors.EngineError, _handle_engine)
    app.add_error_handler(domain_errors.DomainError, _handle_domain)
