"""The poison policy: a custom period from 0001-01-01 once made every request fail (one SQL parameter per day).
Such periods are refused everywhere a policy is made (API, file, page: one validation in PolicyIn), and a database
that already holds one still answers."""
from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from nicegui import ui
from nicegui.testing import User
from sqlalchemy import Engine

from app import runtime
from services.budget import policies
from services.core.db import create_db_engine
from services.core.periods import MAX_SPAN_DAYS
from services.core.settings import SettingsError, load_settings
from tests.support.api import assert_client_error
from tests.support.servers import start_server

POISON = {'name': 'p', 'period': 'custom', 'period_start': '0001-01-01', 'period_end': '2026-12-31', 'limit_usd': '1'}


@pytest.mark.parametrize(('changes', 'field'), [
    ({}, 'period_start: must be between 2000-01-01 and 2099-12-31'),
    ({'period_start': '1800-01-01'}, 'period_start'),
    ({'period_start': '2026-01-01', 'period_end': '9999-12-31'}, 'period_end: must be between'),
    ({'period_start': '2020-01-01', 'period_end': '2030-01-01'}, 'at most ten years'),
])
def test_out_of_range_custom_periods_are_refused(changes: dict[str, str], field: str) -> None:
    with pytest.raises(policies.PolicyInvalid, match=field):
        policies.validate({**POISON, **changes})


def test_the_longest_custom_period_is_ten_years() -> None:
    policy = policies.validate({**POISON, 'period_start': '2020-01-01', 'period_end': '2029-12-31'})
    assert policy.period_end is not None and policy.period_start is not None
    assert (policy.period_end - policy.period_start).days + 1 == MAX_SPAN_DAYS


def test_rest_refuses_the_poison_policy(database_url: str, tmp_path: Path) -> None:
    server = start_server(tmp_path, database_url, SPENDGAUGE_DAILY_LIMIT_USD='none')
    try:
        with server.client() as api:
            assert_client_error(api.post('/policies', json=POISON), 422, mentions='period_start')
            assert_client_error(api.post('/policies', json={**POISON, 'period_start': '1800-01-01'}), 422,
                                mentions='period_start')
            fine = api.post('/policies', json={**POISON, 'period_start': '2026-01-01'})
            assert fine.status_code == 201, fine.text
            pid = fine.json()['id']
            assert_client_error(api.patch(f'/policies/{pid}', json={'period_start': '0001-01-01'}), 422,
                                mentions='period_start')
            assert api.get('/policies').json()['count'] == 1
            assert api.post('/check', json={}).status_code == 200
    finally:
        server.stop()
    assert 'Traceback' not in server.log()


def _store_poison(url: str) -> None:
    """Write the poison row as a version without the bounds would have."""
    engine: Engine = create_db_engine(url)
    end = datetime.now(UTC).date() + timedelta(days=30)
    good = policies.validate({**POISON, 'period_start': end.isoformat(), 'period_end': end.isoformat()})
    poison = good.model_copy(update={'period_start': date(1, 1, 1)})
    with engine.begin() as conn:
        policies.create_policy(conn, poison)
    engine.dispose()


def test_a_stored_poison_policy_does_not_take_the_service_down(database_url: str, tmp_path: Path) -> None:
    _store_poison(database_url)
    server = start_server(tmp_path, database_url, SPENDGAUGE_TZ='Asia/Kolkata')
    try:
        with server.client() as api:
            started = time.monotonic()
            assert api.post('/usage', json={'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 1000,
                                            'cost_usd': '0.5'}).status_code == 201
            for _ in range(2):
                check = api.post('/check', json={'estimated_cost_usd': '0.75'})
                assert check.status_code == 200, check.text
            # counted over its last ten years (clamped), so the $0.50 is in it: 0.50 + 0.75 crosses $1
            assert check.json()['decision'] == 'warn', check.json()
            assert '$0.50 spent + $0.75 estimated would cross the limit of $1.00' in check.json()['reasons'][0]
            assert api.get('/usage').status_code == 200
            assert api.get('/budget/summary').status_code == 200
            listed = api.get('/policies')
            assert listed.status_code == 200 and listed.json()['items'][0]['period_start'] == '0001-01-01'
            assert time.monotonic() - started < 20
    finally:
        server.stop()
    log = server.log()
    assert 'Traceback' not in log
    assert 'out of bounds' in log


@pytest.mark.parametrize(('content', 'message'), [
    ('- {name: old, period: custom, period_start: 0001-01-01, period_end: 2026-12-31, limit_usd: 1}\n',
     'policy 0: period_start: must be between'),
    ('- {name: long, period: custom, period_start: 2000-01-01, period_end: 2099-12-31, limit_usd: 1}\n',
     'at most ten years'),
])
def test_a_poison_policies_file_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str,
                                                message: str) -> None:
    path = tmp_path / 'policies.yaml'
    path.write_text(content)
    monkeypatch.setenv('SPENDGAUGE_POLICIES_FILE', str(path))
    with pytest.raises(SettingsError, match=message):
        runtime.start(load_settings())


async def test_the_policies_page_refuses_the_poison_period(user: User) -> None:
    await user.open('/policies')
    user.find(marker='name').type('Poison')
    user.find(marker='limit_usd').type('1')
    user.find(kind=ui.select, marker='period').elements.pop().value = 'custom'
    user.find(marker='period_start').type('0001-01-01')
    user.find(marker='period_end').type('2026-12-31')
    user.find(marker='save-policy').click()
    await user.should_see('period_start: must be between 2000-01-01 and 2099-12-31')
    with runtime.current().engine.connect() as conn:
        assert [p.name for p in policies.list_policies(conn)] == ['Daily budget'], 'only the default limit'
