"""Eco mode: the persisted flag on SQLite and PostgreSQL, and GET/POST /eco against real servers."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app import runtime
from app.api import install
from services.budget import eco
from services.live.hub import hub
from services.live.topics import EcoChanged, LiveEvent
from tests.support.api import assert_client_error
from tests.support.servers import Server, start_server

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
OFF = {'eco_mode': False, 'changed_at': None, 'reason': None}


# --- service -----------------------------------------------------------------------------------------------------

def test_off_until_switched_and_changed_at_moves_only_on_a_change(engine: Engine) -> None:
    with engine.connect() as conn:
        assert eco.get_eco(conn) == OFF
    with engine.begin() as conn:
        assert eco.set_eco(conn, False, 'already off', now=T0) == OFF
        on = eco.set_eco(conn, True, 'budget at 90%', now=T0)
    assert on == {'eco_mode': True, 'changed_at': T0.isoformat(), 'reason': 'budget at 90%'}
    with engine.begin() as conn:
        assert eco.get_eco(conn) == on, 'persisted'
        assert eco.set_eco(conn, True, 'policy', now=T0 + timedelta(hours=1)) == on
    later = T0 + timedelta(hours=2)
    with engine.begin() as conn:
        off = eco.set_eco(conn, False, now=later)
    assert off == {'eco_mode': False, 'changed_at': later.isoformat(), 'reason': 'manual'}
    with engine.connect() as conn:
        assert eco.get_eco(conn) == off


def test_changed_at_is_utc(engine: Engine) -> None:
    local = datetime(2026, 3, 10, 15, 30, tzinfo=ZoneInfo('Europe/Berlin'))
    with engine.begin() as conn:
        changed_at = eco.set_eco(conn, True, 'test', now=local)['changed_at']
    assert changed_at == '2026-03-10T14:30:00+00:00'


@pytest.mark.parametrize('reason', ['', '   ', 'x' * (eco.MAX_REASON + 1), 'a\x00b'])
def test_a_bad_reason_is_refused(engine: Engine, reason: str) -> None:
    with engine.begin() as conn:
        with pytest.raises(ValueError, match='reason'):
            eco.set_eco(conn, True, reason)
        assert eco.get_eco(conn) == OFF


# --- REST API ----------------------------------------------------------------------------------------------------

def post(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post('/eco', json=body)
    assert response.status_code == 200, response.text
    return response.json()


def get(client: httpx.Client) -> dict[str, Any]:
    response = client.get('/eco')
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def restore_eco(api: httpx.Client) -> Iterator[None]:
    """The server is shared: leave eco mode as the test found it."""
    before = get(api)
    yield
    post(api, {'eco_mode': before['eco_mode'], 'reason': 'restored by tests'})


def test_round_trip(api: httpx.Client, restore_eco: None) -> None:
    start = datetime.now(UTC)
    post(api, {'eco_mode': False})
    on = post(api, {'eco_mode': True, 'reason': '  nightly batch  '})
    assert set(on) == {'eco_mode', 'changed_at', 'reason'}
    assert (on['eco_mode'], on['reason']) == (True, 'nightly batch')
    changed_at = datetime.fromisoformat(on['changed_at'])
    assert changed_at.utcoffset() == timedelta(0)
    assert start - timedelta(seconds=1) <= changed_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert get(api) == on

    assert post(api, {'eco_mode': True, 'reason': 'again'}) == on, 'same value: changed_at and reason stay'
    off = post(api, {'eco_mode': False})
    assert (off['eco_mode'], off['reason']) == (False, 'manual')
    assert datetime.fromisoformat(off['changed_at']) >= changed_at and off['changed_at'] != on['changed_at']
    assert get(api) == off
    assert post(api, {'eco_mode': False, 'reason': None}) == off


BAD_BODIES = {
    'missing eco_mode': ({'reason': 'x'}, 'eco_mode'),
    'eco_mode a string': ({'eco_mode': 'yes'}, 'eco_mode'),
    'eco_mode a number': ({'eco_mode': 1}, 'eco_mode'),
    'eco_mode null': ({'eco_mode': None}, 'eco_mode'),
    'blank reason': ({'eco_mode': True, 'reason': '  '}, 'reason'),
    'reason too long': ({'eco_mode': True, 'reason': 'x' * (eco.MAX_REASON + 1)}, 'reason'),
    'reason a number': ({'eco_mode': True, 'reason': 5}, 'reason'),
    'unknown field': ({'eco_mode': True, 'mode': 'on'}, 'mode'),
}


@pytest.mark.parametrize(('body', 'field'), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_bad_body_is_422_and_changes_nothing(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    before = get(api)
    assert_client_error(api.post('/eco', json=body), 422, mentions=field)
    assert get(api) == before


def test_post_publishes_the_flag() -> None:
    app = FastAPI()
    install(app)
    seen: list[tuple[bool, bool]] = []

    def listener(event: LiveEvent) -> None:
        if isinstance(event, EcoChanged):  # read on another connection: the change must be committed
            with runtime.current().engine.connect() as conn:
                seen.append((event.eco_mode, eco.get_eco(conn)['eco_mode']))

    unsubscribe = hub.subscribe(listener)
    try:
        with TestClient(app) as client:
            assert client.post('/api/v1/eco', json={'eco_mode': True}).status_code == 200
            assert client.post('/api/v1/eco', json={'eco_mode': False}).status_code == 200
            assert client.post('/api/v1/eco', json={'eco_mode': 'maybe'}).status_code == 422
    finally:
        unsubscribe()
    assert seen == [(True, True), (False, False)]


@pytest.fixture(scope='module')
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp('eco-secured'), token='t')
    yield srv
    srv.stop()


def test_switching_needs_the_token(secured: Server) -> None:
    with secured.client() as authorized, httpx.Client(base_url=secured.api, timeout=30) as anonymous:
        response = anonymous.post('/eco', json={'eco_mode': True})
        assert_client_error(response, 401)
        assert response.headers['www-authenticate'] == 'Bearer'
        assert_client_error(anonymous.post('/eco', json={'eco_mode': True},
                                           headers={'Authorization': 'Bearer nope'}), 401)
        assert_client_error(anonymous.get('/eco'), 401)  # reading needs a token too once tokens exist
        assert get(authorized) == OFF
        on = post(authorized, {'eco_mode': True, 'reason': 'ops'})
        assert (on['eco_mode'], on['reason']) == (True, 'ops')
        assert get(authorized) == on
