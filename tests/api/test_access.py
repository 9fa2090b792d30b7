"""Who may call what: every route of the REST API, called as anonymous, `read`, `ingest` and `admin` against a real
server that has tokens. Refused calls answer 401/403 and change nothing; allowed ones succeed and do what they say.

The route table below must cover every operation in /openapi.json: a new route without a row here fails the suite.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import event, uid
from tests.support.fake_api import FakeAPI
from tests.support.servers import NO_PRICE_DATA_URL, Server, start_server
from tests.support.wait import eventually

ADMIN_TOKEN = 'admin-' + 'x' * 30
ROLES = ('anonymous', 'read', 'ingest', 'admin')
FIXTURES = Path(__file__).resolve().parents[1] / 'fixtures'


@dataclass
class Door:
    server: Server
    tokens: dict[str, str]
    admin: httpx.Client

    def client(self, role: str) -> httpx.Client:
        headers = {} if role == 'anonymous' else {'Authorization': f'Bearer {self.tokens[role]}'}
        return httpx.Client(base_url=self.server.api, headers=headers, timeout=60)


@pytest.fixture(scope='module')
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    with FakeAPI() as openrouter:
        openrouter.route('/api/v1/key', json.loads((FIXTURES / 'providers' / 'openrouter_key.json').read_text()))
        srv = start_server(tmp_path_factory.mktemp('access'), token=ADMIN_TOKEN, SPENDGAUGE_OPENROUTER_KEY='sk-or-t',
                           SPENDGAUGE_OPENROUTER_URL=openrouter.url, SPENDGAUGE_PROVIDERS_SYNC_MINUTES='600')
        try:
            with srv.client() as admin:
                tokens = {'admin': ADMIN_TOKEN}
                for role in ('read', 'ingest'):
                    response = admin.post('/tokens', json={'name': f'{role} test', 'role': role})
                    assert response.status_code == 201, response.text
                    tokens[role] = response.json()['token']
                _first_pull_done(admin)
                yield Door(srv, tokens, admin)
        finally:
            srv.stop()


def _first_pull_done(admin: httpx.Client, timeout: float = 60) -> None:
    """The scheduler's first OpenRouter pull (5 s after start) adds pulled spend to today: wait for it, so that it
    cannot land between a test's two reads of the state a refused call must leave unchanged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sources = admin.get('/sync/status').json()['sources']
        runs = [s['last_run'] for s in sources if s['source'] == 'openrouter_direct']
        if runs and runs[0] and runs[0]['finished_at']:
            return
        time.sleep(0.2)
    raise AssertionError('the first OpenRouter pull did not finish')


# --- what each route needs, and a call that succeeds for a role allowed to make it ------------------------------

@dataclass
class Route:
    method: str
    path: str  # as in /openapi.json
    role: str  # 'read', 'ingest', 'plan' (read or ingest) or 'admin'
    call: Callable[[Door], tuple[str, dict[str, Any]]] = field(default=lambda d: ('', {}))  # concrete path, kwargs
    state: str | None = None  # a GET (as admin) that refused calls must leave unchanged and an allowed one change
    ok: tuple[int, ...] = (200,)


def _recorded(door: Door) -> tuple[str, str]:
    """A fresh agent and session with one call recorded."""
    agent, session = uid('agent'), uid('session')
    response = door.admin.post('/usage', json=event(agent_id=agent, session_id=session, cost_usd='0.01'))
    assert response.status_code == 201, response.text
    return agent, session


def _policy(door: Door) -> int:
    response = door.admin.post('/policies', json={'name': uid('p'), 'scope': 'agent', 'scope_value': uid('a'),
                                                  'limit_usd': '3', 'action': 'warn'})
    assert response.status_code == 201, response.text
    return int(response.json()['id'])


def _allocation(door: Door) -> int:
    response = door.admin.post('/allocations', json=_allocation_body())
    assert response.status_code == 201, response.text
    return int(response.json()['id'])


def _allocation_body() -> dict[str, Any]:
    return {'name': uid('split'), 'limit_usd': '10', 'shares': [{'scope': 'project', 'scope_value': uid('p'),
                                                                 'percent': 50}]}


def _alert(door: Door) -> int:
    """An open alert: a warn policy on a fresh agent, then spend beyond it."""
    agent = uid('agent')
    door.admin.post('/policies', json={'name': uid('p'), 'scope': 'agent', 'scope_value': agent,
                                       'limit_usd': '0.01', 'action': 'warn'}).raise_for_status()
    door.admin.post('/usage', json=event(agent_id=agent, cost_usd='1')).raise_for_status()
    found: list[int] = []

    def raised() -> bool:
        items = door.admin.get('/alerts', params={'status': 'all', 'limit': 1000}).json()['items']
        found[:] = [a['id'] for a in items if agent in a['message'] and a['open'] and not a['acknowledged_at']]
        return bool(found)
    eventually(raised)
    return found[0]


def _task(door: Door) -> str:
    response = door.admin.post('/tasks', json={'title': 'write docs', 'id': uid('task')})
    assert response.status_code == 201, response.text
    return str(response.json()['id'])


def _token(door: Door) -> int:
    response = door.admin.post('/tokens', json={'name': uid('doomed'), 'role': 'read'})
    assert response.status_code == 201, response.text
    return int(response.json()['id'])


def _provider(door: Door) -> str:
    provider = uid('acme')
    door.admin.put('/prices', json={'provider': provider, 'model': 'm', 'input_usd_per_mtok': '1',
                                    'output_usd_per_mtok': '2'}).raise_for_status()
    return provider


def _old_event(door: Door) -> int:
    """Records an event 400 days old; returns an age that prunes it (and raises the watermark)."""
    ts = datetime.now(UTC) - timedelta(days=400)
    door.admin.post('/usage', json=event(agent_id=uid('a'), cost_usd='0.01', ts=ts)).raise_for_status()
    return 365


def get(path: str, **params: Any) -> Callable[[Door], tuple[str, dict[str, Any]]]:
    return lambda d: (path, {'params': params} if params else {})


ROUTES = [
    *(Route('GET', p, 'read', get(p)) for p in (
        '/agents', '/alerts', '/alerts/deliveries', '/budget/summary', '/budget/forecast', '/budget/by-agent',
        '/budget/by-provider', '/budget/by-model', '/budget/by-channel', '/budget/efficiency', '/budget/history',
        '/budget/reconciliation', '/optimize', '/digest',
        '/budget/limits', '/eco', '/policies', '/prices', '/prices/unpriced', '/prices/audit', '/prices/data',
        '/prices/models',
        '/reports', '/sessions',
        '/sessions.csv', '/sync/status', '/tasks', '/thresholds', '/usage', '/usage/export', '/usage/retention',
        '/ws/status')),
    Route('GET', '/reports/{kind}', 'read', get('/reports/summary')),
    Route('GET', '/prices/models/{model}', 'read', get('/prices/models/gpt-4o')),
    Route('GET', '/policies/{policy_id}', 'read', lambda d: (f'/policies/{_policy(d)}', {})),
    Route('GET', '/sessions/{session_id}', 'read', lambda d: (f'/sessions/{_recorded(d)[1]}', {})),
    Route('GET', '/tasks/{task_id}', 'read', lambda d: (f'/tasks/{_task(d)}', {})),
    Route('GET', '/tokens', 'admin', get('/tokens')),
    Route('GET', '/audit', 'admin', get('/audit')),
    Route('GET', '/doctor', 'admin', get('/doctor', timeout=2)),
    Route('POST', '/usage', 'ingest', lambda d: ('/usage', {'json': event(agent_id=uid('a'), cost_usd='0.01')}),
          state='/budget/summary', ok=(201,)),
    Route('POST', '/usage/batch', 'ingest',
          lambda d: ('/usage/batch', {'json': {'events': [event(agent_id=uid('a'), cost_usd='0.02')]}}),
          state='/budget/summary'),
    Route('POST', '/usage/prune', 'admin', lambda d: ('/usage/prune', {'json': {'older_than_days': _old_event(d)}}),
          state='/usage/retention'),
    Route('POST', '/check', 'ingest', lambda d: ('/check', {'json': {'agent_id': uid('a')}})),
    Route('DELETE', '/check/reservations/{event_id}', 'ingest', lambda d: (f'/check/reservations/{uid("e")}', {})),
    Route('GET', '/budget/remaining', 'plan', get('/budget/remaining', agent_id='a')),
    Route('POST', '/budget/schedule', 'plan',
          lambda d: ('/budget/schedule', {'json': {'tasks': [{'id': 't', 'priority': 1, 'estimated_cost_usd': '1'}],
                                                   'remaining_usd': '5'}})),
    Route('PUT', '/budget/limits/{period}', 'admin',
          lambda d: ('/budget/limits/week', {'json': {'limit_usd': str(10 + len(uid('x')) % 7)}}),
          state='/budget/limits'),
    Route('DELETE', '/budget/limits/{period}', 'admin', lambda d: ('/budget/limits/week', {}),
          state='/budget/limits'),
    Route('POST', '/eco', 'admin',
          lambda d: ('/eco', {'json': {'eco_mode': not d.admin.get('/eco').json()['eco_mode']}}), state='/eco'),
    Route('POST', '/agents/{agent_id}/pause', 'admin', lambda d: (f'/agents/{_recorded(d)[0]}/pause', {}),
          state='/agents'),
    Route('POST', '/agents/{agent_id}/resume', 'admin', lambda d: (_paused(d), {}), state='/agents'),
    Route('POST', '/alerts/{alert_id}/ack', 'admin', lambda d: (f'/alerts/{_alert(d)}/ack', {'json': {'by': 'me'}}),
          state='/alerts?status=all&limit=1000'),
    Route('POST', '/alerts/{alert_id}/resolve', 'admin', lambda d: (f'/alerts/{_alert(d)}/resolve', {}),
          state='/alerts?status=all&limit=1000'),
    Route('POST', '/policies', 'admin', lambda d: ('/policies', {'json': {'name': uid('p'), 'limit_usd': '9'}}),
          state='/policies', ok=(201,)),
    Route('PATCH', '/policies/{policy_id}', 'admin',
          lambda d: (f'/policies/{_policy(d)}', {'json': {'limit_usd': '4'}}), state='/policies'),
    Route('DELETE', '/policies/{policy_id}', 'admin', lambda d: (f'/policies/{_policy(d)}', {}), state='/policies'),
    Route('GET', '/allocations', 'read', get('/allocations')),
    Route('GET', '/allocations/{allocation_id}', 'read', lambda d: (f'/allocations/{_allocation(d)}', {})),
    Route('POST', '/allocations', 'admin', lambda d: ('/allocations', {'json': _allocation_body()}),
          state='/allocations', ok=(201,)),
    Route('PUT', '/allocations/{allocation_id}', 'admin',
          lambda d: (f'/allocations/{_allocation(d)}', {'json': _allocation_body()}), state='/allocations'),
    Route('DELETE', '/allocations/{allocation_id}', 'admin', lambda d: (f'/allocations/{_allocation(d)}', {}),
          state='/allocations'),
    Route('PUT', '/prices', 'admin',
          lambda d: ('/prices', {'json': {'provider': uid('acme'), 'model': 'm', 'input_usd_per_mtok': '1',
                                          'output_usd_per_mtok': '1'}}), state='/prices'),
    Route('DELETE', '/prices', 'admin', lambda d: ('/prices', {'params': {'provider': _provider(d), 'model': 'm'}}),
          state='/prices'),
    # the role is checked before anything is fetched: an admin's fetch from a closed port is the 422
    Route('POST', '/prices/update', 'admin', lambda d: ('/prices/update', {'json': {'url': NO_PRICE_DATA_URL}}),
          ok=(422,)),
    Route('POST', '/digest/send', 'admin', lambda d: ('/digest/send', {'json': {}})),
    Route('POST', '/prices/recalculate', 'admin',
          lambda d: ('/prices/recalculate', {'json': {'from': '2026-01-01', 'to': '2026-01-02', 'dry_run': True}})),
    Route('POST', '/sessions/{session_id}/end', 'admin', lambda d: (f'/sessions/{_recorded(d)[1]}/end', {}),
          state='/sessions?limit=1000'),
    Route('POST', '/sync/{source}', 'admin', lambda d: ('/sync/openrouter_direct', {}), state='/sync/status'),
    Route('POST', '/tasks', 'admin', lambda d: ('/tasks', {'json': {'title': 'a task', 'id': uid('task')}}),
          state='/tasks?limit=1000', ok=(201,)),
    Route('PATCH', '/tasks/{task_id}', 'admin', lambda d: (f'/tasks/{_task(d)}', {'json': {'status': 'running'}}),
          state='/tasks?limit=1000'),
    Route('PUT', '/thresholds', 'admin',
          lambda d: ('/thresholds', {'json': {'session_threshold_usd': f'{1 + len(uid("x")) % 5}.5'}}),
          state='/thresholds'),
    Route('POST', '/tokens', 'admin', lambda d: ('/tokens', {'json': {'name': uid('t'), 'role': 'ingest'}}),
          state='/tokens', ok=(201,)),
    Route('DELETE', '/tokens/{token_id}', 'admin', lambda d: (f'/tokens/{_token(d)}', {}), state='/tokens'),
]


def _paused(door: Door) -> str:
    agent, _ = _recorded(door)
    door.admin.post(f'/agents/{agent}/pause').raise_for_status()
    return f'/agents/{agent}/resume'


def allowed(route: Route, role: str) -> bool:
    if role == 'anonymous':
        return False
    if role == 'admin':
        return True
    return route.role == role or (route.role == 'plan' and role in ('read', 'ingest'))


def _state(door: Door, route: Route) -> Any:
    assert route.state is not None
    response = door.admin.get(route.state)
    assert response.status_code == 200, response.text
    body = response.json()
    if isinstance(body, dict):  # a clock is not state, nor the count of refused requests (this very refusal)
        body = {key: value for key, value in body.items()
                if not key.startswith('resets_') and key != 'refused_requests'}
    return body


def test_the_table_covers_every_operation(door: Door) -> None:
    schema = httpx.get(door.server.url + '/openapi.json')
    operations = {(method.upper(), path.removeprefix('/api/v1'))
                  for path, item in schema.json()['paths'].items() for method in item
                  if path.startswith('/api/v1/') and method in ('get', 'post', 'put', 'patch', 'delete')}
    operations.discard(('GET', '/health'))
    assert operations == {(r.method, r.path) for r in ROUTES}


@pytest.mark.parametrize('route', ROUTES, ids=[f'{r.method} {r.path}' for r in ROUTES])
def test_each_role_is_refused_or_served(door: Door, route: Route) -> None:
    path, kwargs = route.call(door)
    before = _state(door, route) if route.state else None
    for role in ROLES:
        if allowed(route, role):
            continue
        with door.client(role) as client:
            response = client.request(route.method, path, **kwargs)
        expected = 401 if role == 'anonymous' else 403
        assert response.status_code == expected, f'{role}: {response.status_code} {response.text}'
        assert 'detail' in response.json()
        if route.state:
            assert _state(door, route) == before, f'a refused call by {role} changed {route.state}'
    for role in ROLES:
        if not allowed(route, role):
            continue
        if route.state and role != 'admin':
            continue  # ingest writes are checked once, as admin, so each changes state once
        with door.client(role) as client:
            response = client.request(route.method, path, **kwargs)
        assert response.status_code in route.ok, f'{role}: {response.status_code} {response.text}'
        if route.state:
            eventually(lambda: _state(door, route) != before, timeout=5)  # the change is there to read


def test_health_and_the_schema_stay_open(door: Door) -> None:
    assert httpx.get(door.server.api + '/health').status_code == 200
    assert httpx.get(door.server.url + '/openapi.json').status_code == 200


def test_a_revoked_token_is_refused_at_once(door: Door) -> None:
    created = door.admin.post('/tokens', json={'name': uid('short-lived'), 'role': 'read'}).json()
    with door.client('anonymous') as client:
        client.headers['Authorization'] = f'Bearer {created["token"]}'
        assert client.get('/eco').status_code == 200
        door.admin.delete(f'/tokens/{created["id"]}').raise_for_status()
        assert client.get('/eco').status_code == 401


def test_tokens_are_listed_without_the_token(door: Door) -> None:
    created = door.admin.post('/tokens', json={'name': uid('listed'), 'role': 'ingest'}).json()
    listed = door.admin.get('/tokens').json()['items']
    mine = next(t for t in listed if t['id'] == created['id'])
    assert 'token' not in mine
    assert created['token'].startswith(mine['prefix'])
    assert created['token'] not in json.dumps(listed)
