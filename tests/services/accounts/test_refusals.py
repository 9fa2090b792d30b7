"""Requests refused for their token: counted per client and route in memory, bounded, told to the dashboard now and
then, and shown by GET /sync/status of a real server."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.accounts.refusals import PUBLISH_EVERY_S, RefusalLog, client_of
from services.integrations import CALLBACK_USER_AGENT
from services.live.hub import EventHub
from services.live.topics import LiveEvent, RequestsRefused
from tests.support.servers import Server, start_server

BATCH = 'POST /api/v1/usage/batch'
INVALID = 'the bearer token is not valid (revoked, or never issued)'
TOKEN = 'sg-refusals-admin-token'


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)
        self.seconds = 1000.0

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
        self.seconds += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def heard(hub: EventHub) -> list[LiveEvent]:
    events: list[LiveEvent] = []
    hub.subscribe(events.append)
    return events


def log_on(hub: EventHub, clock: Clock, **options: int) -> RefusalLog:
    return RefusalLog(hub, now=lambda: clock.at, monotonic=lambda: clock.seconds, **options)


def test_clients_are_named_by_their_user_agent() -> None:
    assert client_of('spendgauge-litellm-callback') == 'litellm_callback'
    assert client_of('spendgauge-sdk') == 'sdk'
    assert client_of('python-httpx/0.28.1') == client_of(None) == 'other'


def test_refusals_are_counted_per_client_route_and_reason(hub: EventHub, clock: Clock) -> None:
    refusals = log_on(hub, clock)
    for _ in range(3):
        refusals.refused(CALLBACK_USER_AGENT, BATCH, 401, INVALID)
        clock.advance(60)
    refusals.refused('curl/8.0', 'GET /api/v1/policies', 401, INVALID)
    [other, callback] = refusals.snapshot()  # the most recently refused first
    assert callback == {'client': 'litellm_callback', 'route': BATCH, 'status': 401, 'reason': INVALID, 'count': 3,
                        'first_at': '2026-11-29T17:00:00+00:00', 'last_at': '2026-11-29T17:02:00+00:00',
                        'accepted_at': None}
    assert (other['client'], other['route'], other['count']) == ('other', 'GET /api/v1/policies', 1)


def test_the_log_is_bounded(hub: EventHub, clock: Clock) -> None:
    refusals = log_on(hub, clock, max_entries=3)
    for number in range(10):
        refusals.refused(None, f'GET /api/v1/route-{number}', 401, INVALID)
    assert [item['route'] for item in refusals.snapshot()] == [f'GET /api/v1/route-{n}' for n in (9, 8, 7)]


def test_a_request_accepted_after_the_refusals_is_noted(hub: EventHub, clock: Clock) -> None:
    refusals = log_on(hub, clock)
    refusals.accepted(CALLBACK_USER_AGENT)  # nothing refused yet: nothing to note
    refusals.refused(CALLBACK_USER_AGENT, BATCH, 401, INVALID)
    refusals.accepted('spendgauge-sdk')  # another client
    assert refusals.snapshot()[0]['accepted_at'] is None
    clock.advance(180)
    refusals.accepted(CALLBACK_USER_AGENT)
    assert refusals.snapshot()[0]['accepted_at'] == '2026-11-29T17:03:00+00:00'
    clock.advance(60)
    refusals.refused(CALLBACK_USER_AGENT, BATCH, 401, INVALID)  # refused again: no longer put right
    assert refusals.snapshot()[0]['accepted_at'] is None


def test_the_dashboard_hears_of_news_at_once_and_of_more_now_and_then(hub: EventHub, clock: Clock,
                                                                      heard: list[LiveEvent]) -> None:
    refusals = log_on(hub, clock)
    for _ in range(100):  # a flood
        refusals.refused(CALLBACK_USER_AGENT, BATCH, 401, INVALID)
    assert heard == [RequestsRefused('litellm_callback')]
    refusals.refused(CALLBACK_USER_AGENT, 'POST /api/v1/check', 401, INVALID)  # a new kind of refusal
    assert len(heard) == 2
    clock.advance(PUBLISH_EVERY_S)
    refusals.refused(CALLBACK_USER_AGENT, BATCH, 401, INVALID)
    assert len(heard) == 3
    for _ in range(10):
        refusals.accepted(CALLBACK_USER_AGENT)  # put right: told once
    assert len(heard) == 4


@pytest.fixture(scope='module')
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp('refusals'), token=TOKEN)
    yield server
    server.stop()


def post_batch(server: Server, token: str | None, user_agent: str) -> httpx.Response:
    headers = {'User-Agent': user_agent, **({'Authorization': f'Bearer {token}'} if token else {})}
    return httpx.post(server.api + '/usage/batch', json={'events': []}, headers=headers, timeout=30)


def test_the_sync_status_shows_refused_requests(secured: Server) -> None:
    for _ in range(3):
        assert post_batch(secured, 'a-revoked-token', CALLBACK_USER_AGENT).status_code == 401
    assert post_batch(secured, None, 'spendgauge-sdk').status_code == 401
    with secured.client() as admin:
        reader = admin.post('/tokens', json={'name': 'dashboard-reader', 'role': 'read'}).json()['token']
        assert post_batch(secured, reader, CALLBACK_USER_AGENT).status_code == 403
        refused = admin.get('/sync/status').json()['refused_requests']
        by_reason = {(r['client'], r['status'], r['reason']): r for r in refused}
        invalid = by_reason['litellm_callback', 401, INVALID]
        assert (invalid['route'], invalid['count'], invalid['accepted_at']) == (BATCH, 3, None)
        assert by_reason['sdk', 401, 'Authorization: Bearer <token> required']['count'] == 1
        role = by_reason['litellm_callback', 403, 'this needs the ingest role; the token has read']
        assert role['route'] == BATCH and role['count'] == 1
        assert post_batch(secured, TOKEN, CALLBACK_USER_AGENT).status_code == 200  # the token put right
        after = admin.get('/sync/status').json()['refused_requests']
    assert all(r['accepted_at'] for r in after if r['client'] == 'litellm_callback')
    assert not any(r['accepted_at'] for r in after if r['client'] == 'sdk')
    assert TOKEN not in str(after) and 'a-revoked-token' not in str(after)  # no token is ever shown
