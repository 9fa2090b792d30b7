"""/openapi.json tells the truth about errors: every operation under /api/v1 documents each error status it can
answer, with the body it really has (app/api/errors.py).

Derived from the routes, once, when the schema is first built:
- 422 (`ValidationErrorOut`: `detail`, and `errors` when the request did not parse) for every operation that takes
  parameters or a body, in place of FastAPI's default HTTPValidationError, which is not what the handler returns;
- 400 (a body that cannot be read) and 413 (a body too large) for every operation with a body;
- 401 and 403 for every operation that checks the caller's token (`authenticate` in app/api/deps.py);
- 404 for every operation with a path parameter (the id, name or kind names nothing stored).
Statuses only some operations can answer (409 for a conflict, 404 for a query that names nothing, 503) are
declared on the route with `responses=` and `errors.ErrorOut`.

A wrong method on a known path answers 405 with an `Allow` header (app/api/__init__.py); it is the same for every
path and is not repeated on each operation.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.api.deps import authenticate
from app.api.errors import ErrorOut, FieldError, ValidationErrorOut

REF = '#/components/schemas/{model}'
DESCRIPTIONS = {
    '400': 'The body could not be read (not JSON, or not UTF-8)',
    '401': 'No valid `Authorization: Bearer <token>`, although tokens or users exist',
    '403': "The token's role may not do this (read: GET routes; ingest: usage and /check; admin: everything)",
    '404': 'Nothing is stored under that id or name',
    '413': 'The body is too large',
    '422': 'A parameter or the body is invalid; `detail` names the field',
}


def install(app: FastAPI, prefix: str, routes: Sequence[APIRoute]) -> None:
    """Wrap `app.openapi` so that the first build of the schema is completed as above, and cached as before."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_errors(build(), prefix, routes)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_errors(schema: dict[str, Any], prefix: str, routes: Sequence[APIRoute]) -> dict[str, Any]:
    schema.setdefault('components', {})['securitySchemes'] = {
        'bearer': {'type': 'http', 'scheme': 'bearer', 'description': 'a token from `spendgauge token create` or '
                                                                      'SPENDGAUGE_API_TOKENS'}}
    components = schema['components'].setdefault('schemas', {})
    for model in (ErrorOut, FieldError, ValidationErrorOut):
        components.update(_schemas(model))
    authenticated = {(prefix + route.path_format, method.lower()) for route in routes for method in route.methods or ()
                     if _depends_on(route.dependant, authenticate)}
    for path, operations in schema.get('paths', {}).items():
        if not path.startswith(prefix):
            continue
        for method, operation in operations.items():
            responses = operation.setdefault('responses', {})
            parameters = operation.get('parameters', [])
            body = 'requestBody' in operation
            statuses = []
            if body:
                statuses += ['400', '413']
            if (path, method) in authenticated:
                statuses += ['401', '403']
                operation['security'] = [{'bearer': []}]
            if any(p.get('in') == 'path' for p in parameters):
                statuses.append('404')
            for status in statuses:
                responses.setdefault(status, _response(DESCRIPTIONS[status], ErrorOut))
            if parameters or body:
                responses['422'] = _response(DESCRIPTIONS['422'], ValidationErrorOut)
            else:
                responses.pop('422', None)
            operation['responses'] = dict(sorted(responses.items()))
    text = repr(schema['paths'])
    for unused in ('HTTPValidationError', 'ValidationError'):
        if f"'#/components/schemas/{unused}'" not in text:
            components.pop(unused, None)
    return schema


def _response(description: str, model: type[BaseModel]) -> dict[str, Any]:
    return {'description': description,
            'content': {'application/json': {'schema': {'$ref': REF.format(model=model.__name__)}}}}


def _schemas(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF)
    nested = schema.pop('$defs', {})
    return {model.__name__: schema, **nested}


def _depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)
