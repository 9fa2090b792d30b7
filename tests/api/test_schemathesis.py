"""Schemathesis against a real server with API tokens: every operation under /api/v1 and /metrics, generated from
/openapi.json, must never answer 5xx, and must answer only documented statuses and content types with bodies valid
against their documented schemas. Bounded so the whole run stays well under a minute; what it found is kept as plain
regression tests next to each route's other tests (see test_openapi.py and the tests/api modules)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from app.api import install
from tests.support.servers import Server, start_server

TOKEN = 'schemathesis-token'
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          unsupported_method, allow_header_conformance, missing_required_header, ignored_auth]
MAX_EXAMPLES = 25


@pytest.fixture(scope='module')
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp('schemathesis'), token=TOKEN)
    yield srv
    srv.stop()


def api_openapi() -> dict[str, Any]:
    """The API's schema as the app builds it (collection needs it before any server runs; pytest 9 breaks
    schemathesis' lazy fixture loading). The test below checks that the server serves this same schema."""
    app = FastAPI()
    install(app)
    return app.openapi()


OPENAPI = api_openapi()
schema = schemathesis.openapi.from_dict(OPENAPI).include(path_regex=r'^(/api/v1/|/metrics$)')


def test_the_server_serves_the_schema_tested(token_server: Server) -> None:
    response = httpx.get(f'{token_server.url}/openapi.json', timeout=30)
    assert response.status_code == 200, response.text
    served = response.json()
    api = {p: v for p, v in served['paths'].items() if p.startswith(('/api/v1/', '/v1/')) or p == '/metrics'}
    assert api == OPENAPI['paths']  # /v1/traces: OTLP ingest, documented but not fuzzed (protobuf bodies)
    tested = OPENAPI['components']['schemas']
    assert {name: served['components']['schemas'].get(name) for name in tested} == tested


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_schema(case: schemathesis.Case, token_server: Server) -> None:
    case.call_and_validate(base_url=token_server.url, headers={'Authorization': f'Bearer {TOKEN}'}, checks=CHECKS)
