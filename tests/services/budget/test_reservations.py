"""Reservations: an allowed check holds its estimate until the call's usage arrives, so many callers at once cannot
overshoot a block policy; holds expire, are released by hand, and are not counted twice."""
from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine

from services.budget import policies
from services.budget.checker import Checker, CheckRequest
from services.live.hub import EventHub
from services.usage.ledger import Ledger
from services.usage.pricing import Pricer
from tests.support.api import assert_client_error, check, record, summary
from tests.support.servers import Server, start_server

ZONE = ZoneInfo('UTC')
CENT = 10_000


@pytest.fixture
def budgeted(engine: Engine) -> Iterator[tuple[Checker, Ledger]]:
    """A $0.77 daily block policy, a ledger and a checker following it."""
    with engine.begin() as conn:
        policies.create_policy(conn, policies.validate({'name': 'cap', 'limit_usd': '0.77', 'action': 'block'}))
    hub = EventHub()
    ledger = Ledger(engine, Pricer(), hub)
    checker = Checker(engine, hub, ZONE)
    checker.start()
    yield checker, ledger
    checker.stop()


def cent_call(ledger: Ledger, event_id: str) -> None:
    ledger.record({'event_id': event_id, 'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.01'})


def test_fifty_threads_at_once_spend_exactly_the_limit(budgeted: tuple[Checker, Ledger]) -> None:
    checker, ledger = budgeted
    start = threading.Barrier(50)

    def caller(n: int) -> int:
        start.wait()
        calls = 0
        while True:
            event_id = f'call-{n}-{calls}'
            if not checker.check(CheckRequest(estimated_cost_micros=CENT), reserve=event_id)['allowed']:
                return calls
            cent_call(ledger, event_id)
            calls += 1

    with ThreadPoolExecutor(50) as pool:
        calls = sum(pool.map(caller, range(50)))
    final = checker.check(CheckRequest())['policies'][0]
    assert (calls, final['spent_micros'], final['held_micros']) == (77, 770_000, 0)


def test_a_hold_counts_for_others_until_its_usage_arrives(budgeted: tuple[Checker, Ledger]) -> None:
    checker, ledger = budgeted
    held = checker.check(CheckRequest(estimated_cost_micros=700_000), reserve='big')
    assert held['reservation']['held_micros'] == 700_000 and held['decision'] == 'warn'
    other = checker.check(CheckRequest(estimated_cost_micros=100_000))
    assert other['decision'] == 'block', 'the hold is counted'
    assert other['policies'][0]['held_micros'] == 700_000 and other['policies'][0]['remaining_micros'] == 70_000
    assert '$0.0000 spent + $0.7000 held + $0.1000 estimated would cross the limit of $0.7700' in other['reasons'][0]
    again = checker.check(CheckRequest(estimated_cost_micros=700_000), reserve='big')
    assert again['decision'] == 'warn', 'a re-check of the same call replaces its hold, not adds to it'
    ledger.record({'event_id': 'big', 'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.65'})
    after = checker.check(CheckRequest(estimated_cost_micros=100_000))['policies'][0]
    assert (after['spent_micros'], after['held_micros'], after['decision']) == (650_000, 0, 'throttle')


def test_holds_expire_and_can_be_released(engine: Engine) -> None:
    with engine.begin() as conn:
        policies.create_policy(conn, policies.validate({'name': 'cap', 'limit_usd': '1', 'action': 'block'}))
    hub = EventHub()
    checker = Checker(engine, hub, ZONE, hold_for=timedelta(minutes=10))
    checker.start()
    now = datetime.now(UTC)
    assert checker.check(CheckRequest(estimated_cost_micros=600_000), now, reserve='a')['allowed']
    assert checker.check(CheckRequest(estimated_cost_micros=300_000), now, reserve='b')['allowed']
    assert not checker.check(CheckRequest(estimated_cost_micros=200_000), now)['allowed']
    assert checker.release('b') and not checker.release('b')
    assert checker.check(CheckRequest(estimated_cost_micros=200_000), now)['policies'][0]['held_micros'] == 600_000
    later = checker.check(CheckRequest(estimated_cost_micros=900_000), now + timedelta(minutes=10, seconds=1))
    assert (later['decision'], later['policies'][0]['held_micros']) == ('warn', 0), 'a expired'
    refused = checker.check(CheckRequest(estimated_cost_micros=2_000_000), now, reserve='c')
    assert 'reservation' not in refused and checker.counters.held() == {}, 'a blocked call holds nothing'
    checker.stop()


def test_a_recount_releases_the_holds_whose_usage_is_stored(budgeted: tuple[Checker, Ledger]) -> None:
    checker, ledger = budgeted
    assert checker.check(CheckRequest(estimated_cost_micros=CENT), reserve='seen-elsewhere')['allowed']
    other_hub = Ledger(ledger.engine, Pricer(), EventHub())  # another instance: this checker hears nothing
    cent_call(other_hub, 'seen-elsewhere')
    checker.rebuild()
    final = checker.check(CheckRequest())['policies'][0]
    assert (final['spent_micros'], final['held_micros']) == (CENT, 0)


# --- over HTTP ------------------------------------------------------------------------------------------------------

@pytest.fixture
def capped(tmp_path: Path, database_url: str) -> Iterator[Server]:
    server = start_server(tmp_path, database_url, SPENDGAUGE_DAILY_LIMIT_USD='none')
    with server.client() as api:
        assert api.put('/budget/limits/day', json={'limit_usd': '0.77'}).status_code == 200
    yield server
    server.stop()
    assert 'Traceback' not in server.log()


def test_fifty_callers_over_http_cannot_overshoot(capped: Server) -> None:
    """The issue's case: limit $0.77, calls of $0.01, 50 callers on one agent recorded $1.00 before reservations."""
    start = threading.Barrier(50)

    def caller(n: int) -> int:
        calls = 0
        with httpx.Client(base_url=capped.api, timeout=30) as api:
            start.wait()
            while True:
                event_id = f'http-{n}-{calls}-{uuid.uuid4().hex[:6]}'
                answer = check(api, agent_id='swarm', estimated_cost_usd='0.01', reserve=True, event_id=event_id)
                if not answer['allowed']:
                    return calls
                record(api, agent_id='swarm', cost_usd='0.01', event_id=event_id)
                calls += 1

    with ThreadPoolExecutor(50) as pool:
        calls = sum(pool.map(caller, range(50)))
    with capped.client() as api:
        assert (calls, summary(api)['spent_micros']) == (77, 770_000)


def test_reservation_api_errors_and_release(api: httpx.Client) -> None:
    assert_client_error(api.post('/check', json={'reserve': True}), 422, mentions='event_id')
    event_id = f'to-release-{uuid.uuid4().hex}'
    held: dict[str, Any] = check(api, estimated_cost_usd='0.5', reserve=True, event_id=event_id)
    assert held['reservation']['event_id'] == event_id and held['reservation']['held_usd'] == '0.500000'
    assert held['decision'] == 'allow', 'no policy: allowed, and held for the policies there are (none)'
    first = api.delete(f'/check/reservations/{event_id}')
    assert first.status_code == 200 and first.json() == {'event_id': event_id, 'released': True}
    assert api.delete(f'/check/reservations/{event_id}').json()['released'] is False
