"""GET /api/v1/digest and POST /api/v1/digest/send over HTTP on a real server with API tokens and the alert webhook
pointing at a real receiver on 127.0.0.1: a reader may preview, only an admin may send, a stranger gets 401, bad
days get a 422 with a message."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.api import assert_client_error
from tests.support.fake_api import FakeAPI
from tests.support.servers import Server, start_server

ADMIN = 'digest-admin-token-0123456789'
NASTY = '<img src=x onerror=alert(1)>'
YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).date()


@pytest.fixture(scope='module')
def hook() -> Iterator[FakeAPI]:
    with FakeAPI() as api:
        api.route('/hook', {'ok': True}, method='POST')
        yield api


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory, hook: FakeAPI) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp('digest'), token=ADMIN, SPENDGAUGE_TZ='UTC',
                       SPENDGAUGE_ALERT_WEBHOOK_URL=f'{hook.url}/hook?token=hook-secret')
    events = [{'event_id': f'digest-{n}', 'agent_id': agent, 'provider': 'openai', 'model': 'gpt-4o',
               'ts': f'{YESTERDAY}T1{n}:00:00+00:00', 'input_tokens': 50_000, 'output_tokens': 1_000}
              for n, agent in enumerate(('planner', 'planner', NASTY))]
    with srv.client() as client:
        assert client.post('/usage/batch', json={'events': events}).json()['stored'] == 3
    yield srv
    srv.stop()


@pytest.fixture(scope='module')
def reader(server: Server) -> Iterator[httpx.Client]:
    with server.client() as admin:
        response = admin.post('/tokens', json={'name': 'digest-reader', 'role': 'read'})
        assert response.status_code == 201, response.text
    with server.client(response.json()['token']) as client:
        yield client


def test_a_reader_previews_yesterday_as_json_text_and_html(reader: httpx.Client) -> None:
    digest = reader.get('/digest').json()
    assert digest['day'] == YESTERDAY.isoformat() and digest['requests'] == 3
    assert [a['name'] for a in digest['top_agents']] == ['planner', NASTY]
    assert digest['limit_micros'] == 5_000_000 and digest['saving'] is not None
    text = reader.get('/digest', params={'format': 'text', 'day': YESTERDAY.isoformat()})
    assert text.headers['content-type'] == 'text/plain; charset=utf-8'
    assert text.text.startswith(f'SpendGauge daily digest for {YESTERDAY} (UTC)\n')
    html = reader.get('/digest', params={'format': 'html'})
    assert html.headers['content-type'] == 'text/html; charset=utf-8'
    assert html.headers['content-security-policy'] == "default-src 'none'; style-src 'unsafe-inline'"
    assert '&lt;img src=x onerror=alert(1)&gt;' in html.text and '<img' not in html.text
    empty = reader.get('/digest', params={'day': '2001-01-01'}).json()
    assert (empty['spent_micros'], empty['top_agents'], empty['saving']) == (0, [], None)


def test_bad_days_and_formats_are_refused(reader: httpx.Client, server: Server) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    assert_client_error(reader.get('/digest', params={'day': tomorrow}), 422, 'in the future')
    assert_client_error(reader.get('/digest', params={'day': '1999-12-31'}), 422, '2000-01-01 or later')
    assert_client_error(reader.get('/digest', params={'day': 'yesterday'}), 422, 'not a date')
    assert_client_error(reader.get('/digest', params={'format': 'pdf'}), 422)
    with server.client() as admin:
        assert_client_error(admin.post('/digest/send', json={'day': '2026-02-30'}), 422, 'not a date')
        assert_client_error(admin.post('/digest/send', json={'when': 'now'}), 422)


def test_only_an_admin_sends_and_a_stranger_is_not_let_in(reader: httpx.Client, server: Server,
                                                          hook: FakeAPI) -> None:
    assert_client_error(reader.post('/digest/send', json={}), 403)
    with httpx.Client(base_url=server.api, timeout=30) as stranger:
        assert_client_error(stranger.get('/digest'), 401)
        assert_client_error(stranger.post('/digest/send', json={}), 401)
    assert not hook.hits('/hook')
    with server.client() as admin:
        response = admin.post('/digest/send', json={})
    assert response.status_code == 200, response.text
    sent = response.json()
    assert [(d['channel'], d['kind'], d['status'], d['attempts']) for d in sent['items']] == \
        [('log', 'digest', 'delivered', 1), ('webhook', 'digest', 'delivered', 1)]
    ref = int(YESTERDAY.strftime('%Y%m%d'))
    assert {d['ref_id'] for d in sent['items']} == {ref} and sent['count'] == 2
    assert 'hook-secret' not in response.text
    assert [h.param('token') for h in hook.hits('/hook')] == ['hook-secret']
