"""Errors of the domain rules. Free of HTTP: the web layer maps them to statuses in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every rule a service reports broken; ``code`` is UPPER_SNAKE, ``field`` optional."""

    code = "DOMAIN_ERROR"

    def __init__(self, detail: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code is not None:
            self.code = code


class ValidationError(DomainError):
    """The input breaks a rule of shape or value (web: 400)."""

    code = "VALIDATION_ERROR"


class NotFoundError(DomainError):
    """The record does not exist (web: 404)."""

    code = "NOT_FOUND"


class ConflictError(DomainError):
    """A uniqueness rule would break (web: 409)."""

    code = "CONFLICT"


class PreconditionFailedError(DomainError):
    """The caller's expected version (ETag) is not the record's current one (web: 412)."""

    code = "PRECONDITION_FAILED"
