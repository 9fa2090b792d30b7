"""Budget settings: agent thresholds per session and per day, the alert naming the agent, pausing, the API and
the dashboard panel."""
from __future__ import annotations

import asyncio
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
from nicegui.testing import User
from sqlalchemy import Engine, select

from app import runtime
from services.alerting import alerts
from services.budget import limits, policies, thresholds
from services.budget.checker import Checker, CheckRequest
from services.core.tables import AGENTS
from services.usage.ledger import Ledger
from tests.support.api import assert_client_error, record, uid
from tests.support.ledger import spend
from tests.support.pages import settle

ZONE = ZoneInfo('Europe/Berlin')


def test_a_session_threshold_names_the_agent_and_pauses_it(ledger: Ledger, engine: Engine) -> None:
    with engine.begin() as conn:
        stored = thresholds.set_thresholds(conn, Decimal('1'), Decimal('3'), pause=True)
    assert (stored.session_micros, stored.day_micros, stored.pause) == (1_000_000, 3_000_000, True)
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    spend(ledger, '0.60', agent_id='coder', session_id='s-1')
    spend(ledger, '0.60', agent_id='reviewer', session_id='s-1')
    with engine.connect() as conn:
        assert alerts.list_alerts(conn) == []
    assert checker.check(CheckRequest(agent_id='coder', session_id='s-1'))['decision'] == 'allow'
    spend(ledger, '0.55', agent_id='coder', session_id='s-1')  # coder: $1.15 in s-1; reviewer stays at $0.60

    with engine.connect() as conn:
        raised = alerts.list_alerts(conn)
        paused = {r.id: r.paused for r in conn.execute(select(AGENTS.c.id, AGENTS.c.paused))}
    assert [a['type'] for a in raised] == ['limit_exceeded']
    assert raised[0]['message'] == ('Agent session threshold (agent coder): $1.15 of $1.00 (115.0%) this session; '
                                    'agent paused')
    assert raised[0]['data']['scope_key'] == 'coder' and raised[0]['data']['paused'] is True
    assert paused == {'coder': True, 'reviewer': False}
    blocked = checker.check(CheckRequest(agent_id='coder', session_id='s-1'))
    assert (blocked['decision'], blocked['reasons'][0]) == ('block', 'agent coder is paused')
    assert checker.check(CheckRequest(agent_id='reviewer', session_id='s-1'))['decision'] == 'allow'
    # a new session starts from zero, but the paused agent stays paused until someone resumes it
    assert checker.check(CheckRequest(agent_id='coder', session_id='s-2'))['decision'] == 'block'


def test_a_daily_threshold_without_pausing_only_warns(ledger: Ledger, engine: Engine) -> None:
    with engine.begin() as conn:
        thresholds.set_thresholds(conn, None, Decimal('0.50'), pause=False)
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    spend(ledger, '0.30', agent_id='writer', session_id='a')
    spend(ledger, '0.30', agent_id='writer', session_id='b')  # two sessions, one day: $0.60
    with engine.connect() as conn:
        raised = alerts.list_alerts(conn)
        assert conn.execute(select(AGENTS.c.paused).where(AGENTS.c.id == 'writer')).scalar() is False
    assert [a['message'] for a in raised] == \
        ['Agent daily threshold (agent writer): $0.6000 of $0.5000 (120.0%) this day']
    result = checker.check(CheckRequest(agent_id='writer'))
    assert result['decision'] == 'warn' and result['allowed'] is True


def test_thresholds_are_replaced_and_removed(engine: Engine) -> None:
    with engine.begin() as conn:
        thresholds.set_thresholds(conn, Decimal('2'), Decimal('5'), pause=True)
        thresholds.set_thresholds(conn, None, Decimal('4'), pause=False)
        assert thresholds.get_thresholds(conn) == thresholds.Thresholds(None, 4_000_000, False)
        panel = [p for p in policies.list_policies(conn) if p.origin == 'panel']
        assert [(p.scope, p.scope_value, p.period, p.limit_micros) for p in panel] == \
            [('agent', None, 'day', 4_000_000)]
        with pytest.raises(policies.PolicyReadOnly, match='Budget settings'):
            policies.update_policy(conn, panel[0].id, {'limit_usd': '9'})
        with pytest.raises(policies.PolicyInvalid, match='day_threshold_usd: must be more than'):
            thresholds.set_thresholds(conn, None, Decimal('0'), pause=False)
        thresholds.set_thresholds(conn, None, None, pause=False)
        assert thresholds.get_thresholds(conn) == thresholds.Thresholds()


def test_auto_pause_needs_an_agent_policy() -> None:
    with pytest.raises(policies.PolicyInvalid, match='auto_pause: only an agent policy'):
        policies.validate({'name': 'x', 'scope': 'global', 'limit_usd': '1', 'auto_pause': True})


def test_thresholds_api(api: httpx.Client) -> None:
    original = api.get('/thresholds').json()
    try:
        put = api.put('/thresholds', json={'session_threshold_usd': '0.25', 'pause': True})
        assert put.status_code == 200, put.text
        assert put.json() == {'session_threshold_micros': 250_000, 'session_threshold_usd': '0.250000',
                              'day_threshold_micros': None, 'day_threshold_usd': None, 'pause': True}
        assert api.get('/thresholds').json() == put.json()
        agent, session = uid('agent'), uid('session')
        record(api, agent_id=agent, session_id=session, cost_usd='0.30')
        check = api.post('/check', json={'agent_id': agent, 'session_id': session}).json()
        assert check['decision'] == 'block' and check['reasons'][0] == f'agent {agent} is paused'
        listed = [a for a in api.get('/alerts').json()['items'] if a['data'].get('scope_key') == agent]
        assert listed and 'agent paused' in listed[0]['message'] and '$0.3000 of $0.2500' in listed[0]['message']
        panel = [p for p in api.get('/policies').json()['items'] if p['origin'] == 'panel']
        assert api.patch(f'/policies/{panel[0]["id"]}', json={'limit_usd': '1'}).status_code == 409
        assert_client_error(api.put('/thresholds', json={'day_threshold_usd': '-1'}), mentions='day_threshold_usd')
        assert_client_error(api.put('/thresholds', json={'day_threshold_usd': 'lots'}), mentions='day_threshold_usd')
        assert_client_error(api.put('/thresholds', json={'pause': True, 'extra': 1}), mentions='extra')
    finally:
        api.put('/thresholds', json={name: original[name]
                                     for name in ('session_threshold_usd', 'day_threshold_usd', 'pause')})


async def test_the_panel_saves_the_thresholds_and_the_daily_limit(user: User) -> None:
    await user.open('/')
    user.find('Budget settings').click()
    user.find(marker='daily-limit').clear().type('12.5')
    user.find(marker='session-threshold').clear().type('1.5')
    user.find(marker='day-threshold').clear().type('$4')
    user.find(marker='pause-on-threshold').click()
    user.find(marker='save-budget-settings').click()
    rt = runtime.current()

    def stored() -> tuple[thresholds.Thresholds, int | None]:
        with rt.engine.connect() as conn:
            return thresholds.get_thresholds(conn), limits.get_limit(conn, 'day')
    await settle(lambda: stored() == (thresholds.Thresholds(1_500_000, 4_000_000, True), 12_500_000))
    await user.should_see('$1.50 per agent and session, $4.00 per agent and day; agents are paused when they cross one')

    user.find(marker='day-threshold').clear().type('nothing')
    user.find(marker='save-budget-settings').click()
    await user.should_see("Per agent and day: 'nothing' is not an amount in USD")
    assert stored()[0].day_micros == 4_000_000


async def test_crossing_a_threshold_toasts_on_the_open_page(user: User) -> None:
    rt = runtime.current()
    with rt.engine.begin() as conn:
        thresholds.set_thresholds(conn, Decimal('0.50'), None, pause=True)
    assert rt.checker is not None
    rt.checker.rebuild()
    await user.open('/')
    await asyncio.to_thread(rt.ledger.record, {'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.75',
                                               'agent_id': 'looper', 'session_id': 's-9'})
    await settle(lambda: user.notify.contains(
        'limit_exceeded: Agent session threshold (agent looper): $0.7500 of $0.5000 (150.0%) this session; '
        'agent paused'))
    await user.should_see('Resume')  # the agent card follows the pause
