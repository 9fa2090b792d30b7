"""Every API response is documented: each operation under /api/v1 declares a typed 2xx body in /openapi.json, and
real responses are exactly of their declared types (a TypedDict that drifts from what the code returns fails)."""
from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
from collections.abc import Awaitable
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
from fastapi import APIRouter, FastAPI, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app import runtime
from app.api import install, routes
from app.api.routes import check, usage
from app.api.routes.check import CheckResult
from app.api.routes.health import Health
from services.alerting.alerts import AlertList
from services.alerting.notify import DeliveryList
from services.budget.eco import EcoState
from services.budget.limits import Limits
from services.budget.policies import PolicyList, PolicyWithSpend
from services.budget.thresholds import ThresholdsOut
from services.core.access import SYSTEM
from services.insights.forecast import BudgetForecast
from services.insights.optimize import OptimizeOut
from services.insights.planner import ScheduleOut
from services.insights.report_formats import ReportCatalog, ReportJson
from services.sources.sync import SyncStatus
from services.spend.agents import AgentList
from services.spend.budget import (
    AgentBreakdown,
    ChannelBreakdown,
    History,
    ModelBreakdown,
    PeriodSummary,
    ProviderBreakdown,
)
from services.spend.reconciliation import Reconciliation
from services.spend.sessions import SessionDetail, SessionList
from services.spend.tasks import TaskList
from services.usage.ledger import BatchOut, RecordedEvent
from services.usage.price_overrides import OverrideList, OverrideOut, UnpricedList
from services.usage.queries import UsagePage
from tests.support.typed import assert_conforms

API = '/api/v1'
FILE_TYPES = ('text/csv', 'text/markdown', 'application/x-ndjson', 'text/plain', 'text/html')  # string bodies


def api_app() -> FastAPI:
    app = FastAPI()
    install(app)
    return app


@pytest.fixture(scope='module')
def openapi() -> dict[str, Any]:
    with TestClient(api_app()) as client:
        response = client.get('/openapi.json')
    assert response.status_code == 200
    return response.json()


# --- the schema ---------------------------------------------------------------------------------------------------

def untyped(schema: dict[str, Any], components: dict[str, Any], media_type: str) -> str | None:
    """Why a response body's schema says nothing about its shape, or None when it is typed: a $ref to an object with
    properties, an object with properties or typed values, an array of typed items, a string for a file."""
    if '$ref' in schema:
        return untyped(components[schema['$ref'].rsplit('/', 1)[-1]], components, media_type)
    for key in ('anyOf', 'oneOf', 'allOf'):
        if key in schema:
            reasons = [untyped(s, components, media_type) for s in schema[key] if s.get('type') != 'null']
            return next((r for r in reasons if r), None) if reasons else f'{key} of null only'
    kind = schema.get('type')
    if kind == 'object':
        values = schema.get('additionalProperties')
        if schema.get('properties') or (isinstance(values, dict) and values and not untyped(values, components,
                                                                                            media_type)):
            return None
        return 'an object without properties'
    if kind == 'array':
        items = schema.get('items')
        return untyped(items, components, media_type) if items else 'an array without items'
    if kind == 'string' and media_type.startswith(FILE_TYPES):
        return None
    return f'type {kind!r}' if kind else 'no schema'


def untyped_operations(openapi: dict[str, Any]) -> list[str]:
    components = openapi.get('components', {}).get('schemas', {})
    problems = []
    for path, operations in openapi['paths'].items():
        if not path.startswith(API):
            continue
        for method, operation in operations.items():
            name = f'{method.upper()} {path}'
            ok = {code: r for code, r in operation['responses'].items() if code.startswith('2')}
            if not ok:
                problems.append(f'{name}: no 2xx response')
            for code, response in ok.items():
                content = response.get('content') or {}
                if not content:
                    problems.append(f'{name} {code}: no body')
                for media_type, body in content.items():
                    reason = untyped(body.get('schema') or {}, components, media_type)
                    if reason:
                        problems.append(f'{name} {code} {media_type}: {reason}')
    return problems


def test_every_operation_declares_a_typed_success_body(openapi: dict[str, Any]) -> None:
    operations = [p for p in openapi['paths'] if p.startswith(API)]
    assert len(operations) >= 30, 'the API is mounted'
    assert untyped_operations(openapi) == []


def test_the_schema_check_rejects_untyped_bodies() -> None:
    """The check above cannot pass by accident: dicts of Any, bare Responses and JSON strings fail it."""
    app = FastAPI()

    @app.get(f'{API}/loose')
    def loose() -> dict[str, Any]:
        return {}

    @app.get(f'{API}/raw', response_class=Response)
    def raw() -> Response:
        return Response()

    @app.get(f'{API}/text')
    def text() -> str:
        return ''

    @app.get(f'{API}/typed')
    def typed() -> EcoState:
        return {'eco_mode': False, 'changed_at': None, 'reason': None}

    problems = untyped_operations(app.openapi())
    assert [p.split(' ')[1] for p in problems] == [f'{API}/loose', f'{API}/raw', f'{API}/text']


def properties(openapi: dict[str, Any], path: str, method: str = 'get') -> dict[str, Any]:
    schema = openapi['paths'][f'{API}{path}'][method]['responses']['200']['content']['application/json']['schema']
    return openapi['components']['schemas'][schema['$ref'].rsplit('/', 1)[-1]]['properties']


def test_the_schema_names_the_fields(openapi: dict[str, Any]) -> None:
    summary = properties(openapi, '/budget/summary')
    assert summary['spent_micros']['type'] == 'integer' and summary['spent_usd']['type'] == 'string'
    assert {'limit_micros', 'remaining_micros', 'by_channel', 'resets_in'} <= summary.keys()
    check = properties(openapi, '/check', 'post')
    assert check['decision']['enum'] == ['allow', 'warn', 'throttle', 'block']
    assert {'allowed', 'reasons', 'policies', 'eco_mode', 'retry_after_s'} <= check.keys()
    assert 'text/csv' in openapi['paths'][f'{API}/sessions.csv']['get']['responses']['200']['content']


def test_the_hot_paths_answer_without_response_validation(openapi: dict[str, Any]) -> None:
    """POST /usage, /usage/batch and /check build their bodies with orjson: documented, never validated."""
    hot = [r for module in (usage, check) for r in module.router.routes
           if isinstance(r, APIRoute) and r.endpoint in (usage.record_event, usage.record_batch, check.check)]
    assert len(hot) == 3
    for route in hot:
        assert route.response_field is None, route.path
        assert '$ref' in openapi['paths'][f'{API}{route.path}']['post']['responses'][str(route.status_code or 200)][
            'content']['application/json']['schema'], route.path


# --- real responses -----------------------------------------------------------------------------------------------

def seed(client: TestClient) -> None:
    """Spend, a task, policies (one throttling, one blocking), a block's alert, thresholds and a price: enough that
    every read has items to show."""
    def ok(method: str, path: str, body: Any, status: int = 200) -> Any:
        response = client.request(method, f'{API}{path}', json=body)
        assert response.status_code == status, (path, response.text)
        return response.json()

    ok('POST', '/tasks', {'id': 'typed-task', 'title': 'Typed', 'estimated_cost_usd': '0.05'}, 201)
    ok('POST', '/tasks', {'id': 'typed-pending', 'title': 'Pending', 'priority': 3}, 201)
    for body in (EVENT, {**EVENT, 'event_id': 'typed-1', 'cost_usd': '0.25', 'tags': ['x'], 'channel': 'litellm'},
                 {**EVENT, 'model': 'typed-unknown-model'}):
        ok('POST', '/usage', body, 201)
    ok('POST', '/policies', {'name': 'typed', 'limit_usd': '1', 'action': 'throttle'}, 201)
    ok('POST', '/policies', {'name': 'typed agent', 'scope': 'agent', 'scope_value': 'typed-agent', 'limit_usd': '2',
                             'action': 'block'}, 201)
    ok('POST', '/allocations', {'name': 'typed split', 'limit_usd': '3', 'shares': [
        {'scope': 'project', 'scope_value': 'typed', 'percent': '50'},
        {'scope': 'tag', 'scope_value': 'x', 'amount_usd': '1'}]}, 201)
    assert ok('POST', '/check', {'agent_id': 'typed-agent', 'estimated_cost_usd': '5'})['decision'] == 'block'
    ok('PUT', '/thresholds', {'session_threshold_usd': '2'})
    ok('PUT', '/prices', {'provider': 'openai', 'model': 'typed-priced-model', 'input_usd_per_mtok': '1',
                          'output_usd_per_mtok': '2'})


EVENT = {'agent_id': 'typed-agent', 'session_id': 'typed-session', 'task_id': 'typed-task', 'provider': 'openai',
         'model': 'gpt-4o', 'input_tokens': 1000, 'output_tokens': 100}


def test_responses_are_exactly_their_declared_types() -> None:
    """Over HTTP, as clients see them; the routes that answer with orjson are checked here as the code built them."""
    with TestClient(api_app()) as client:
        seed(client)

        def get(path: str, declared: Any, **params: Any) -> Any:
            response = client.get(f'{API}{path}', params=params)
            assert response.status_code == 200, (path, response.text)
            assert_conforms(declared, response.json(), f'GET {path}')
            return response.json()

        def send(method: str, path: str, declared: Any, body: Any = None, status: int = 200) -> Any:
            response = client.request(method, f'{API}{path}', json=body)
            assert response.status_code == status, (path, response.text)
            assert_conforms(declared, response.json(), f'{method} {path}')
            return response.json()

        send('POST', '/usage', RecordedEvent, {**EVENT, 'event_id': 'typed-2', 'latency_ms': 120}, 201)
        assert send('POST', '/usage', RecordedEvent, {**EVENT, 'event_id': 'typed-2'})['status'] == 'duplicate'
        batch = send('POST', '/usage/batch', BatchOut, {'events': [{**EVENT, 'event_id': 'typed-1'}, {'model': ''},
                                                                   {**EVENT, 'metadata': {'k': [1, 'v']}}]})
        assert (batch['stored'], batch['duplicate'], batch['rejected']) == (1, 1, 1)
        assert get('/usage', UsagePage, limit=2)['next_cursor'] is not None
        throttled = send('POST', '/check', CheckResult, {'agent_id': 'typed-agent', 'estimated_cost_usd': '0.72'})
        assert throttled['decision'] == 'throttle' and throttled['retry_after_s'] >= 1
        blocked = send('POST', '/check', CheckResult, {'agent_id': 'typed-agent', 'estimated_cost_usd': '5'})
        assert blocked['decision'] == 'block' and 'retry_after_s' not in blocked
        send('POST', '/check', CheckResult, {'model': 'gpt-4o', 'estimated_input_tokens': 10})
        send('POST', '/check', CheckResult, {})

        send('PUT', '/prices', OverrideOut, {'provider': 'openai', 'model': 'typed-unknown-model',
                                             'input_usd_per_mtok': '1', 'output_usd_per_mtok': '2'})
        plan = send('POST', '/budget/schedule', ScheduleOut, {'tasks': [
            {'id': 'a', 'priority': 2, 'estimated_cost_usd': '0.5'}, {'id': 'b', 'priority': '0.5'},
            {'id': 'c', 'priority': 1, 'estimated_cost_usd': '999'}]})
        assert plan['run_now'] and plan['defer']
        assert get('/budget/by-agent', AgentBreakdown)['items']
        assert get('/policies', PolicyList)['items'][0]['current']
        assert get('/alerts', AlertList, status='all')['count'] >= 1  # the block raised policy_violation
        for path, declared in (('/health', Health), ('/budget/summary', PeriodSummary),
                               ('/budget/forecast', BudgetForecast), ('/budget/by-provider', ProviderBreakdown),
                               ('/budget/by-model', ModelBreakdown), ('/budget/by-channel', ChannelBreakdown),
                               ('/budget/history', History), ('/budget/reconciliation', Reconciliation),
                               ('/budget/limits', Limits), ('/agents', AgentList), ('/sessions', SessionList),
                               ('/sessions/typed-session', SessionDetail), ('/tasks', TaskList),
                               ('/policies/1', PolicyWithSpend), ('/thresholds', ThresholdsOut),
                               ('/prices', OverrideList), ('/prices/unpriced', UnpricedList), ('/eco', EcoState),
                               ('/sync/status', SyncStatus), ('/alerts/deliveries', DeliveryList),
                               ('/reports', ReportCatalog), ('/reports/summary', ReportJson),
                               ('/reports/projection', ReportJson), ('/optimize', OptimizeOut)):
            get(path, declared)
        get('/reports/trend', ReportJson, period='week')
        get('/reports/comparison', ReportJson, period='day', group_by='agent')


PATH_VALUES = {'session_id': 'typed-session', 'task_id': 'typed-task', 'policy_id': 1, 'allocation_id': 1,
               'kind': 'summary', 'model': 'gpt-4o'}


def declared_body(annotation: Any) -> Any:
    """The type a route declares for its JSON body; None when it builds a Response itself."""
    members = [m for m in get_args(annotation) if m is not Response] if get_origin(annotation) in (Union, UnionType) \
        else [annotation] if annotation is not Response else []
    return Union[tuple(members)] if members else None  # noqa: UP007 (a union built at run time)


async def _awaited(result: Awaitable[Any]) -> Any:
    return await result


def test_read_routes_return_exactly_their_declared_types() -> None:
    """FastAPI drops the keys a TypedDict does not declare, so over HTTP an undeclared key just vanishes: here every
    GET route is called as the code runs it, and what it returns must be exactly the type it declares."""
    with TestClient(api_app()) as client:
        seed(client)
    rt = runtime.current()
    checked = []
    for info in pkgutil.iter_modules(routes.__path__):
        module = importlib.import_module(f'{routes.__name__}.{info.name}')
        for route in getattr(module, 'router', APIRouter()).routes:
            if not isinstance(route, APIRoute) or 'GET' not in (route.methods or ()):
                continue
            declared = declared_body(get_type_hints(route.endpoint)['return'])
            if declared is None:
                continue  # CSV, or orjson: checked over HTTP above
            with rt.engine.connect() as conn:
                given = {'conn': conn, 'rt': rt, 'actor': SYSTEM, **PATH_VALUES}  # actor: admin-only reads
                arguments = {name: given[name] for name in inspect.signature(route.endpoint).parameters
                             if name in given}
                result = route.endpoint(**arguments)
                if inspect.isawaitable(result):  # an async route (reports: built in a worker thread)
                    result = asyncio.run(_awaited(result))
                assert_conforms(declared, result, f'GET {route.path}')
            checked.append(route.path)
    assert len(checked) >= 25, checked


# --- error statuses -----------------------------------------------------------------------------------------------

def test_every_operation_documents_the_errors_it_can_answer(openapi: dict[str, Any]) -> None:
    """401/403 where a token is checked, 404 where a path names something, 400/413 where there is a body, and 422
    with the body the handler really returns (app/api/errors.py), never FastAPI's default HTTPValidationError."""
    from app.api import ROUTES
    from app.api.deps import authenticate

    def checks_token(route: APIRoute) -> bool:
        pending = list(route.dependant.dependencies)
        while pending:
            dependency = pending.pop()
            if dependency.call is authenticate:
                return True
            pending += dependency.dependencies
        return False

    tokened = {(f'{API}{r.path_format}', m.lower()) for r in ROUTES for m in r.methods or () if checks_token(r)}
    assert len(tokened) >= 15, tokened
    missing = []
    for path, operations in openapi['paths'].items():
        for method, operation in operations.items():
            declared = operation['responses']
            wanted = set()
            if (path, method) in tokened:
                wanted |= {'401', '403'}
            if '{' in path:
                wanted.add('404')
            if 'requestBody' in operation:
                wanted |= {'400', '413', '422'}
            if operation.get('parameters'):
                wanted.add('422')
            missing += [f'{method.upper()} {path} {status}' for status in sorted(wanted - declared.keys())]
            for status, response in declared.items():
                if status.startswith('4'):
                    ref = response['content']['application/json']['schema']['$ref']
                    assert ref.endswith('/ValidationErrorOut' if status == '422' else '/ErrorOut'), (path, status)
    assert missing == []
    assert 'HTTPValidationError' not in openapi['components']['schemas']
