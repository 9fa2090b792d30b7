"""Every error a caller can cause is a 4xx JSON body with a `detail` that names the field; nothing is a 500.

The domain's refusals (services/core/errors.py) carry their status; they are mapped here, once, for every route."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.core.errors import DomainError
from services.core.inputs import error_message

log = logging.getLogger(__name__)


class BadRequest(ValueError):
    """Raised by routes for input that parses but makes no sense; becomes a 400/422 with the message."""

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.status_code = status_code


class ErrorOut(BaseModel):
    """Every 4xx (and 503) body: what was wrong, in words."""

    detail: str = Field(description='what was wrong, naming the field where there is one')


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: 'body', 'query', 'path' or 'header', then the field's path")
    msg: str
    type: str = Field(description="pydantic's error type, such as 'missing' or 'less_than_equal'")


class ValidationErrorOut(BaseModel):
    """A 422: `detail` in words for every field that failed; `errors` one by one when the request did not parse
    (a refusal of input that parsed has `detail` only)."""

    detail: str = Field(description="'<field>: <message>' for each failed field, joined by '; '")
    errors: list[FieldError] = Field(default_factory=list, description='the failures one by one')


def refusals(**descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the error statuses only some routes answer: `refusals(e409='the id is taken')`."""
    return {int(status.removeprefix('e')): {'model': ErrorOut, 'description': text}
            for status, text in descriptions.items()}


NOT_AN_OBJECT = ('model_attributes_type', 'dict_type')  # pydantic's errors for a body that is no JSON object
OBJECT_HINTS = {'/api/v1/usage': ', or use /api/v1/usage/batch for a list of events ({"events": [...]})'}


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message = describe_validation(errors)
        if any(tuple(e.get('loc', ())) == ('body',) and e.get('type') in NOT_AN_OBJECT for e in errors):
            message = f'send a JSON object{OBJECT_HINTS.get(request.url.path, "")}'
        return JSONResponse({'detail': message, 'errors': _plain(errors)}, status_code=422)

    @app.exception_handler(BadRequest)
    async def _bad_request(_request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({'detail': str(exc)}, status_code=exc.status_code)

    @app.exception_handler(DomainError)
    async def _refused(_request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse({'detail': str(exc)}, status_code=exc.status)


def describe_validation(errors: Sequence[Mapping[str, Any]]) -> str:
    parts: list[str] = []
    for item in errors:
        loc = [str(p) for p in item.get('loc', ()) if p not in ('body', 'query', 'path', 'header')]
        message = error_message(item)
        if item.get('type') == 'json_invalid':
            message = 'the request body is not valid JSON'
            loc = []
        parts.append(f'{".".join(loc)}: {message}' if loc else message)
    return '; '.join(parts) or 'invalid request'


def _plain(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{'loc': [p if isinstance(p, int) else str(p) for p in e.get('loc', ())], 'msg': str(e.get('msg')),
             'type': str(e.get('type'))} for e in errors]

