"""Checks a real response against what /openapi.json documents for its operation: the status is declared, and the
body is valid against the declared schema (JSON Schema, with the document's components)."""
from __future__ import annotations

from functools import cache
from typing import Any

import httpx
from jsonschema import Draft202012Validator

API = '/api/v1'


@cache
def _schema(base_url: str) -> dict[str, Any]:
    response = httpx.get(f'{base_url}/openapi.json', timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def assert_documented(client: httpx.Client, response: httpx.Response, method: str, template: str) -> None:
    """`template` is the operation's path as documented without the prefix, such as '/sessions/{session_id}/end'."""
    base = str(client.base_url).rstrip('/').removesuffix(API)
    assert_documented_in(_schema(base), response, method, template)


def assert_documented_in(openapi: dict[str, Any], response: httpx.Response, method: str, template: str) -> None:
    operation = openapi['paths'][f'{API}{template}'][method.lower()]
    status = str(response.status_code)
    assert status in operation['responses'], (f'{method} {template} answered {status}, documented: '
                                              f'{sorted(operation["responses"])}: {response.text}')
    content = operation['responses'][status].get('content') or {}
    media_type = response.headers.get('content-type', '').split(';')[0]
    assert media_type in content, (method, template, status, media_type, list(content))
    if media_type == 'application/json':
        schema = {**content[media_type]['schema'], 'components': openapi['components']}
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(response.json())]
        assert not errors, (method, template, status, errors, response.text)
