"""Errors the domain raises for requests it refuses. Each carries the HTTP status the API answers with
(app/api/errors.py maps them in one place); pages and the CLI show the message."""
from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    status: ClassVar[int] = 422


class Invalid(DomainError, ValueError):
    """The request parses but makes no sense; the message names the field."""


class NotFound(DomainError, LookupError):
    status = 404


class Conflict(DomainError):
    """The request clashes with what is stored (a taken id, a read-only policy, a source not configured)."""

    status = 409


class Forbidden(DomainError, PermissionError):
    status = 403


class Unavailable(DomainError):
    status = 503
