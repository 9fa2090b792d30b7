"""`GET /metrics` against real server processes: what the API, a sync against a stand-in of OpenRouter and the alerts
did shows up in the Prometheus text, exactly; the agent label stays bounded; the route needs a read token once
tokens exist; the HTTP histogram is labelled by route template, never by the raw path.

Counters grow for the whole life of a server, so each test compares a scrape before with one after what it does."""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.live.metrics import AGENT_LABELS, NO_AGENT, OTHER
from tests.support.api import event, uid
from tests.support.fake_api import FakeAPI, Reply
from tests.support.servers import Server, start_server
from tests.support.wait import eventually

ADMIN_TOKEN = 'admin-' + 'm' * 30
FIXTURES = Path(__file__).resolve().parents[1] / 'fixtures'
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Scrape:
    text: str
    samples: Samples
    help: dict[str, str]  # family -> HELP text

    def value(self, name: str, **labels: str) -> float:
        """A sample's value; 0 for one not (yet) exported."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def labels(self, name: str, label: str) -> set[str]:
        return {dict(key)[label] for sample, key in self.samples if sample == name and label in dict(key)}


def scrape(base_url: str, token: str | None = None) -> Scrape:
    headers = {'Authorization': f'Bearer {token}'} if token else {}
    response = httpx.get(f'{base_url}/metrics', headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers['content-type'] == 'text/plain; version=0.0.4; charset=utf-8'
    samples: Samples = {}
    helps: dict[str, str] = {}
    for family in text_string_to_metric_families(response.text):
        helps[family.name] = family.documentation
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(response.text, samples, helps)


def grown(before: Scrape, after: Scrape, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Per label set, how much the samples called `name` grew (those that did not move are left out)."""
    keys = {key for sample, key in (*before.samples, *after.samples) if sample == name}
    changes = {key: after.samples.get((name, key), 0.0) - before.samples.get((name, key), 0.0) for key in keys}
    return {key: change for key, change in changes.items() if change}


def delta(before: Scrape, after: Scrape, name: str, label: str) -> dict[str, float]:
    """Per value of `label`, summed over the other labels, how much `name` grew."""
    summed: dict[str, float] = {}
    for key, change in grown(before, after, name).items():
        summed[dict(key)[label]] = summed.get(dict(key)[label], 0.0) + change
    return {value: change for value, change in summed.items() if change}


@dataclass
class Door:
    server: Server
    openrouter: FakeAPI
    tokens: dict[str, str]

    def client(self, role: str = 'admin') -> httpx.Client:
        return httpx.Client(base_url=self.server.api, headers={'Authorization': f'Bearer {self.tokens[role]}'},
                            timeout=30)


@pytest.fixture(scope='module')
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    """A server with tokens and an OpenRouter source (a real puller against a stand-in), once its first scheduled
    pull is through (it runs seconds after start), so that only the tests' own pulls move the sync counters."""
    with FakeAPI() as openrouter:
        openrouter.route('/api/v1/key', json.loads((FIXTURES / 'providers' / 'openrouter_key.json').read_text()))
        srv = start_server(tmp_path_factory.mktemp('metrics'), token=ADMIN_TOKEN, SPENDGAUGE_DAILY_LIMIT_USD='none',
                           SPENDGAUGE_OPENROUTER_KEY='sk-or-metrics', SPENDGAUGE_OPENROUTER_URL=openrouter.url,
                           SPENDGAUGE_PROVIDERS_SYNC_MINUTES='600')
        try:
            tokens = {'admin': ADMIN_TOKEN}
            with httpx.Client(base_url=srv.api, headers={'Authorization': f'Bearer {ADMIN_TOKEN}'}) as admin:
                for role in ('read', 'ingest'):
                    response = admin.post('/tokens', json={'name': f'metrics {role}', 'role': role})
                    assert response.status_code == 201, response.text
                    tokens[role] = response.json()['token']

                def first_pull_done() -> bool:
                    status = admin.get('/sync/status').json()['sources']
                    run = next(s for s in status if s['source'] == 'openrouter_direct')['last_run']
                    return run is not None and run['status'] != 'running'
                eventually(first_pull_done, timeout=30)
            yield Door(srv, openrouter, tokens)
        finally:
            srv.stop()


def alerts_by_kind(client: httpx.Client) -> dict[int, tuple[str, str]]:
    items = client.get('/alerts', params={'status': 'all', 'limit': 1000}).json()['items']
    return {a['id']: (a['type'], a['severity']) for a in items}


def test_what_happened_is_counted_exactly(door: Door) -> None:
    read = door.tokens['read']
    before = scrape(door.server.url, read)
    with door.client('admin') as admin:
        alerts_before = alerts_by_kind(admin)
    provider, agent, session, missing = uid('acme'), uid('agent'), uid('session'), uid('nobody')

    with door.client('ingest') as ingest:
        # events: two from the SDK via LiteLLM, one direct through the API; a batch from the LiteLLM callback with a
        # repeat (counted once) and a rejected event (not counted)
        for cost in ('0.000125', '0.25'):
            body = event(provider=provider, agent_id=agent, session_id=session, cost_usd=cost, source='sdk',
                         channel='litellm')
            assert ingest.post('/usage', json=body).status_code == 201
        assert ingest.post('/usage', json=event(provider=provider, cost_usd='1.5')).status_code == 201
        repeated = event(provider=provider, agent_id=agent, cost_usd='0.01', source='litellm_callback',
                         channel='litellm')
        batch = [repeated, repeated, event(provider=provider, agent_id=agent, cost_usd='0.02',
                                           source='litellm_callback', channel='litellm'), {'model': ''}]
        result = ingest.post('/usage/batch', json={'events': batch}).json()
        assert (result['stored'], result['duplicate'], result['rejected']) == (2, 1, 1)

        # checks of every decision: one policy on a fresh agent, with estimates at each step of its ladder
        checked = uid('checked')
        with door.client('admin') as admin:
            response = admin.post('/policies', json={'name': uid('p'), 'scope': 'agent', 'scope_value': checked,
                                                     'limit_usd': '10', 'action': 'block'})
            assert response.status_code == 201, response.text
        decisions: Counter[str] = Counter()
        for estimate in ('1', '2', '8.5', '9.7', '9.8', '12'):
            response = ingest.post('/check', json={'agent_id': checked, 'estimated_cost_usd': estimate})
            assert response.status_code == 200, response.text
            decisions[response.json()['decision']] += 1
        assert decisions == {'allow': 2, 'warn': 1, 'throttle': 2, 'block': 1}

    with door.client('admin') as admin:
        # syncs against the stand-in: one good pull, then three that fail (the third raises a sync_failure alert)
        assert admin.post('/sync/openrouter_direct').json()['runs'][0]['status'] == 'ok'
        door.openrouter.route('/api/v1/key', Reply({'error': {'message': 'boom'}}, status=500))
        for _ in range(3):
            assert admin.post('/sync/openrouter_direct').json()['runs'][0]['status'] == 'error'
        assert admin.get(f'/sessions/{missing}').status_code == 404

        def raised() -> dict[tuple[str, str], int]:
            return dict(Counter(kind for id_, kind in alerts_by_kind(admin).items() if id_ not in alerts_before))
        eventually(lambda: ('sync_failure', 'warning') in raised() and any(t == 'policy_violation'
                                                                             for t, _ in raised()))
        new_alerts = raised()

    after = scrape(door.server.url, read)
    assert {tuple(sorted(dict(key).items())): change for key, change in
            grown(before, after, 'spendgauge_usage_events_total').items()} == {
        (('channel', 'litellm'), ('source', 'sdk')): 2, (('channel', 'direct'), ('source', 'api')): 1,
        (('channel', 'litellm'), ('source', 'litellm_callback')): 2}
    assert after.value('spendgauge_spend_micros_total', provider=provider) == 125 + 250_000 + 1_500_000 + 30_000
    agent_spend = delta(before, after, 'spendgauge_agent_spend_micros_total', 'agent')
    assert agent_spend == {agent: 125 + 250_000 + 30_000, NO_AGENT: 1_500_000}

    assert delta(before, after, 'spendgauge_checks_total', 'decision') == {'allow': 2, 'warn': 1, 'throttle': 2,
                                                                           'block': 1}
    assert after.value('spendgauge_check_duration_seconds_count') \
        - before.value('spendgauge_check_duration_seconds_count') == 6
    assert after.value('spendgauge_check_duration_seconds_sum') > before.value('spendgauge_check_duration_seconds_sum')

    assert delta(before, after, 'spendgauge_sync_runs_total', 'source') == {'openrouter_direct': 4}
    assert delta(before, after, 'spendgauge_sync_failures_total', 'source') == {'openrouter_direct': 3}

    alerts = {(dict(key)['type'], dict(key)['severity']): change
              for key, change in grown(before, after, 'spendgauge_alerts_raised_total').items()}
    assert alerts == new_alerts  # what GET /alerts lists as opened since, by type and severity

    # the HTTP histogram: route templates, never the raw path (the ids above appear in no label)
    def requests(method: str, route: str, status: str) -> float:
        labels = {'method': method, 'route': route, 'status': status}
        return after.value('spendgauge_http_request_duration_seconds_count', **labels) \
            - before.value('spendgauge_http_request_duration_seconds_count', **labels)
    assert requests('POST', '/api/v1/usage', '2xx') == 3
    assert requests('POST', '/api/v1/usage/batch', '2xx') == 1
    assert requests('POST', '/api/v1/check', '2xx') == 6
    assert requests('POST', '/api/v1/sync/{source}', '2xx') == 4
    assert requests('GET', '/api/v1/sessions/{session_id}', '4xx') == 1
    assert requests('GET', '/metrics', '2xx') == 1  # the scrape before; this one is timed once it has answered
    routes = after.labels('spendgauge_http_request_duration_seconds_count', 'route')
    assert all(route.startswith(('/', '(')) for route in routes), routes
    for raw in (provider, agent, session, checked, missing):
        assert raw not in ' '.join(routes)


def test_every_metric_has_help_and_the_process_is_there(door: Door) -> None:
    metrics = scrape(door.server.url, door.tokens['read'])
    ours = {name for name in metrics.help if name.startswith('spendgauge_') and not name.endswith('_created')}
    assert ours >= {'spendgauge_usage_events', 'spendgauge_spend_micros', 'spendgauge_agent_spend_micros',
                    'spendgauge_checks', 'spendgauge_check_duration_seconds', 'spendgauge_sync_runs',
                    'spendgauge_sync_failures', 'spendgauge_alerts_raised', 'spendgauge_dashboard_reload_failures',
                    'spendgauge_dashboard_reload_duration_seconds', 'spendgauge_http_request_duration_seconds'}
    assert all(metrics.help[name] for name in ours), metrics.help
    assert metrics.value('process_resident_memory_bytes') > 0
    assert metrics.value('process_cpu_seconds_total') > 0
    assert any(name == 'python_info' for name, _ in metrics.samples)
    for decision in ('allow', 'warn', 'throttle', 'block'):  # every decision is exported, at 0 before it happens
        assert ('spendgauge_checks_total', frozenset({('decision', decision)})) in metrics.samples
    buckets = {dict(labels)['le'] for name, labels in metrics.samples
               if name == 'spendgauge_check_duration_seconds_bucket'}
    assert {'5e-05', '0.001', '0.1', '+Inf'} <= buckets, buckets


def test_the_dashboard_feed_reloads_are_timed(tmp_path: Path) -> None:
    """With no page open new spend only marks the dashboard stale (app/feed.py); opening the page loads it: timed."""
    srv = start_server(tmp_path, SPENDGAUGE_DAILY_LIMIT_USD='none')
    try:
        with srv.client() as client:
            assert client.post('/usage', json=event(cost_usd='0.001')).status_code == 201
        before = scrape(srv.url)
        assert httpx.get(f'{srv.url}/', timeout=30).status_code == 200  # the page reads the feed's current data
        after = scrape(srv.url)
        assert after.value('spendgauge_dashboard_reload_duration_seconds_count') \
            > before.value('spendgauge_dashboard_reload_duration_seconds_count')
        assert after.value('spendgauge_dashboard_reload_duration_seconds_sum') \
            > before.value('spendgauge_dashboard_reload_duration_seconds_sum')
        assert after.value('spendgauge_dashboard_reload_failures_total') == 0
    finally:
        srv.stop()


def test_metrics_need_a_read_token_once_tokens_exist(door: Door) -> None:
    url = f'{door.server.url}/metrics'
    anonymous = httpx.get(url, timeout=30)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers['www-authenticate'] == 'Bearer'
    assert httpx.get(url, headers={'Authorization': 'Bearer not-a-token'}, timeout=30).status_code == 401
    refused = httpx.get(url, headers={'Authorization': f'Bearer {door.tokens["ingest"]}'}, timeout=30)
    assert refused.status_code == 403, refused.text
    for role in ('read', 'admin'):
        response = httpx.get(url, headers={'Authorization': f'Bearer {door.tokens[role]}'}, timeout=30)
        assert response.status_code == 200, (role, response.text)
        assert 'spendgauge_checks_total' in response.text
    with door.client('admin') as admin:
        refusals = admin.get('/sync/status').json()['refused_requests']
    assert {r['route'] for r in refusals} >= {'GET /metrics'}, refusals


def test_metrics_are_open_on_a_loopback_server_without_tokens(server: Server) -> None:
    metrics = scrape(server.url)  # no Authorization, like every read route there
    assert ('spendgauge_checks_total', frozenset({('decision', 'allow')})) in metrics.samples


def test_static_files_are_labelled_by_their_mount(server: Server) -> None:
    before = scrape(server.url)
    assert httpx.get(f'{server.url}/assets/favicon.svg', timeout=30).status_code == 200
    after = scrape(server.url)
    labels = {'method': 'GET', 'route': '/assets/{path}', 'status': '2xx'}
    assert after.value('spendgauge_http_request_duration_seconds_count', **labels) \
        - before.value('spendgauge_http_request_duration_seconds_count', **labels) == 1


def test_the_agent_label_stays_bounded(tmp_path: Path) -> None:
    """The first AGENT_LABELS agents seen get a label of their own; the spend of every later one goes to OTHER."""
    srv = start_server(tmp_path, SPENDGAUGE_DAILY_LIMIT_USD='none')
    try:
        before = scrape(srv.url)
        assert before.labels('spendgauge_agent_spend_micros_total', 'agent') == set()  # a fresh server
        agents = [f'bounded-{i:03d}' for i in range(AGENT_LABELS + 15)]
        with srv.client() as client:
            for i, agent in enumerate(agents):  # one at a time: the order they are seen in is this order
                body = event(agent_id=agent, cost_usd=f'0.{i + 1:06d}')
                assert client.post('/usage', json=body).status_code == 201, agent
            assert client.post('/usage', json=event(agent_id=agents[0], cost_usd='1')).status_code == 201
        after = scrape(srv.url)
        labelled = after.labels('spendgauge_agent_spend_micros_total', 'agent')
        assert labelled == {*agents[:AGENT_LABELS], OTHER}
        assert after.value('spendgauge_agent_spend_micros_total', agent=agents[0]) == 1 + 1_000_000
        assert after.value('spendgauge_agent_spend_micros_total', agent=OTHER) == sum(
            i + 1 for i in range(AGENT_LABELS, len(agents)))
        assert after.value('spendgauge_usage_events_total', source='api', channel='direct') == len(agents) + 1
    finally:
        srv.stop()
