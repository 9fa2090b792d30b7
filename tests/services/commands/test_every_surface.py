"""Every state change, made from each surface that offers it (the REST API, a page, the CLI on the database),
leaves the same state, keeps the budget checker in step, and publishes its topic exactly once.

One process: NiceGUI's simulated user drives the pages, its HTTP client the API (the same app), and the CLI runs
`main([... '--db', <the app's database>])`, which uses the running app's commands. So each surface is checked
against the same runtime, hub and checker.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nicegui import ui
from nicegui.testing import User
from sqlalchemy import func, select

from app import cli, runtime
from app.runtime import Runtime
from services.accounts import tokens
from services.alerting import alerts
from services.budget import allocations, eco, limits, policies, thresholds
from services.budget.checker import Checker, CheckRequest
from services.core.access import SYSTEM
from services.core.tables import AGENTS, EVENTS, PRICE_OVERRIDES, SESSIONS, TASKS
from services.live.hub import EventHub
from services.live.topics import LiveEvent, Topic
from services.usage.pricing import OverrideRates
from tests.support.pages import settle

Prepared = dict[str, Any]


@dataclass(frozen=True)
class Change:
    name: str
    topic: Topic
    api: Callable[[Prepared], tuple[str, str, dict[str, Any] | None]]  # method, path, JSON body
    done: Callable[[Runtime, Prepared], bool]  # the state the change leaves, read back from the database
    checker: Callable[[Runtime, Prepared], bool]  # the budget checker follows it
    recounts: int = 0  # full recounts of the checker it causes
    page: Callable[[User, Prepared], Awaitable[None]] | None = None
    cli: Callable[[Prepared], list[str]] | None = None
    prepare: Callable[[Runtime], Prepared] = lambda rt: {}


def read(rt: Runtime, query: Any) -> Any:
    with rt.engine.connect() as conn:
        return conn.execute(query).scalar()


def with_agent(rt: Runtime) -> Prepared:
    rt.ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.01', 'agent_id': 'coder',
                      'session_id': 's-1'})
    return {'agent': 'coder', 'session': 's-1'}


def with_old_event(rt: Runtime) -> Prepared:
    rt.ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.01',
                      'ts': (datetime.now(UTC) - timedelta(days=3)).isoformat()})
    return {}


def with_new_price(rt: Runtime) -> Prepared:
    """A call priced yesterday, and a price for its model that is higher now (as after a price update)."""
    yesterday = datetime.now(UTC) - timedelta(days=1)
    _, event = rt.ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 1000, 'output_tokens': 500,
                                 'ts': yesterday.isoformat()})
    rt.pricer.set_overrides({('openai', 'gpt-4o'): OverrideRates(input=5_000_000, output=20_000_000)})
    return {'event': event['id'], 'from': yesterday.date().isoformat()}


def recounted(rt: Runtime) -> dict[Any, int]:
    """The counters as a recount from the database makes them."""
    fresh = Checker(rt.engine, EventHub(), rt.settings.zone)
    fresh.rebuild()
    return fresh.counters.snapshot()


def with_alert(rt: Runtime) -> Prepared:
    alert = rt.commands.alerts.raise_(SYSTEM, 'anomaly', 'warning', 'coder spent $3.00 in the last hour', 'k:1', {})
    assert alert is not None
    return {'alert': alert['id']}


def with_policy(rt: Runtime) -> Prepared:
    policy = rt.commands.policies.create(SYSTEM, {'name': 'old cap', 'limit_usd': '3'})
    return {'policy': policy.id}


def stored_alert(rt: Runtime, alert_id: int) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        return dict(alerts.get_alert(conn, alert_id))


async def open_budget_settings(user: User) -> None:
    await user.open('/')
    user.find('Budget settings').click()


async def page_set_limit(user: User, _: Prepared) -> None:
    await open_budget_settings(user)
    user.find(marker='daily-limit').clear().type('7')
    user.find(marker='save-budget-settings').click()


async def page_thresholds(user: User, _: Prepared) -> None:
    await open_budget_settings(user)
    user.find(marker='session-threshold').clear().type('2')
    user.find(marker='pause-on-threshold').click()
    user.find(marker='save-budget-settings').click()


async def page_pause(user: User, prepared: Prepared) -> None:
    await user.open('/')
    await user.should_see(marker=f'pause-{prepared["agent"]}')  # once the feed has the agent's first call
    user.find(marker=f'pause-{prepared["agent"]}').click()
    user.find(marker='pause-confirm').click()  # Pause asks first


async def page_eco(user: User, _: Prepared) -> None:
    await user.open('/')
    user.find(marker='eco-toggle').click()


async def page_ack(user: User, prepared: Prepared) -> None:
    await user.open('/alerts')
    user.find(marker='ack-by').clear().type('alice')
    user.find(marker=f'ack-{prepared["alert"]}').click()


async def page_resolve(user: User, prepared: Prepared) -> None:
    await user.open('/alerts')
    user.find(marker=f'resolve-{prepared["alert"]}').click()


async def page_create_policy(user: User, _: Prepared) -> None:
    await user.open('/policies')
    user.find(marker='name').type('team cap')
    user.find(marker='limit_usd').type('4.5')
    user.find(marker='save-policy').click()


async def page_delete_policy(user: User, prepared: Prepared) -> None:
    await user.open('/policies')
    user.find(marker=f'delete-{prepared["policy"]}').click()


SPLIT = {'name': 'split', 'limit_usd': '10', 'shares': [{'scope': 'project', 'scope_value': 'web', 'percent': '70'}]}


def with_allocation(rt: Runtime) -> Prepared:
    return {'allocation': rt.commands.allocations.create(SYSTEM, SPLIT).id}


async def page_create_allocation(user: User, _: Prepared) -> None:
    await user.open('/allocations')
    user.find(marker='allocation-name').type('split')
    user.find(marker='allocation-limit').type('10')
    user.find(marker='share-value-0').type('web')
    user.find(marker='share-amount-0').type('70%')
    user.find(marker='save-allocation').click()


async def page_delete_allocation(user: User, prepared: Prepared) -> None:
    await user.open('/allocations')
    user.find(marker=f'delete-allocation-{prepared["allocation"]}').click()


def web_limits(rt: Runtime) -> list[int]:
    """The limits a check in project web is held to by the allocation's policies."""
    assert rt.checker is not None
    return sorted(p['limit_micros'] for p in rt.checker.check(CheckRequest(project='web'))['policies']
                  if p['name'].startswith('split · '))


async def page_create_token(user: User, _: Prepared) -> None:
    await user.open('/settings')
    user.find(marker='token-name').type('grafana')
    user.find(kind=ui.select, marker='token-role').elements.pop().value = 'read'
    user.find(marker='create-token').click()


def token_roles(rt: Runtime) -> dict[str, str]:
    return {t['name']: t['role'] for t in rt.read(tokens.list_tokens)}


def policy_named(rt: Runtime, name: str) -> policies.PolicyRule | None:
    return next((p for p in rt.read(policies.list_policies) if p.name == name), None)


def _checked_limit(rt: Runtime) -> int | None:
    """The daily limit a check is held to."""
    assert rt.checker is not None
    found = [p['limit_micros'] for p in rt.checker.check(CheckRequest())['policies'] if p['name'] == 'Daily budget']
    return found[0] if found else None


CHANGES = [
    Change('set the daily limit', Topic.POLICIES, recounts=1,
           api=lambda _: ('PUT', '/api/v1/budget/limits/day', {'limit_usd': '7'}),
           page=page_set_limit, cli=lambda _: ['set-limit', 'day', '7'],
           done=lambda rt, _: rt.read(limits.get_limit, 'day') == 7_000_000,
           checker=lambda rt, _: _checked_limit(rt) == 7_000_000),
    Change('set the agent thresholds', Topic.POLICIES, recounts=1,
           api=lambda _: ('PUT', '/api/v1/thresholds', {'session_threshold_usd': '2', 'pause': True}),
           page=page_thresholds, cli=lambda _: ['thresholds', '--session', '2', '--pause'],
           done=lambda rt, _: rt.read(thresholds.get_thresholds) == thresholds.Thresholds(2_000_000, None, True),
           checker=lambda rt, p: rt.checker is not None and any(
               item['name'] == thresholds.SESSION_NAME
               for item in rt.checker.check(CheckRequest(agent_id='coder', session_id='s-1'))['policies'])),
    Change('pause an agent', Topic.AGENTS, prepare=with_agent,
           api=lambda p: ('POST', f'/api/v1/agents/{p["agent"]}/pause', None),
           page=page_pause, cli=lambda p: ['agent', 'pause', p['agent']],
           done=lambda rt, p: read(rt, select(AGENTS.c.paused).where(AGENTS.c.id == p['agent'])) is True,
           checker=lambda rt, p: rt.checker is not None and
           rt.checker.check(CheckRequest(agent_id=p['agent']))['decision'] == 'block'),
    Change('switch eco mode on', Topic.ECO,
           api=lambda _: ('POST', '/api/v1/eco', {'eco_mode': True}),
           page=page_eco, cli=lambda _: ['eco', 'on'],
           done=lambda rt, _: rt.read(eco.get_eco)['eco_mode'] is True,
           checker=lambda rt, _: rt.checker is not None and rt.checker.check(CheckRequest())['eco_mode'] is True),
    Change('acknowledge an alert', Topic.ALERTS, prepare=with_alert,
           api=lambda p: ('POST', f'/api/v1/alerts/{p["alert"]}/ack', {'by': 'alice'}),
           page=page_ack, cli=lambda p: ['alerts', 'ack', str(p['alert']), '--by', 'alice'],
           done=lambda rt, p: stored_alert(rt, p['alert'])['acknowledged_by'] == 'alice',
           checker=lambda rt, _: True),
    Change('resolve an alert', Topic.ALERTS, prepare=with_alert,
           api=lambda p: ('POST', f'/api/v1/alerts/{p["alert"]}/resolve', None),
           page=page_resolve, cli=lambda p: ['alerts', 'resolve', str(p['alert'])],
           done=lambda rt, p: stored_alert(rt, p['alert'])['resolved_at'] is not None,
           checker=lambda rt, _: True),
    Change('add a policy', Topic.POLICIES, recounts=1,
           api=lambda _: ('POST', '/api/v1/policies', {'name': 'team cap', 'limit_usd': '4.5'}),
           page=page_create_policy,
           done=lambda rt, _: (policy := policy_named(rt, 'team cap')) is not None and policy.limit_micros == 4_500_000,
           checker=lambda rt, _: any(p['name'] == 'team cap' for p in rt.checker.check(CheckRequest())['policies'])
           if rt.checker else False),
    Change('delete a policy', Topic.POLICIES, recounts=1, prepare=with_policy,
           api=lambda p: ('DELETE', f'/api/v1/policies/{p["policy"]}', None),
           page=page_delete_policy,
           done=lambda rt, _: policy_named(rt, 'old cap') is None,
           checker=lambda rt, _: rt.checker is not None and
           all(p['name'] != 'team cap' for p in rt.checker.check(CheckRequest())['policies'])),
    Change('add an allocation', Topic.POLICIES, recounts=1,
           api=lambda _: ('POST', '/api/v1/allocations', SPLIT), page=page_create_allocation,
           done=lambda rt, _: [(a.name, a.shares[0].limit_micros) for a in rt.read(allocations.list_allocations)]
           == [('split', 7_000_000)],
           checker=lambda rt, _: web_limits(rt) == [7_000_000, 10_000_000]),
    Change('delete an allocation', Topic.POLICIES, recounts=1, prepare=with_allocation,
           api=lambda p: ('DELETE', f'/api/v1/allocations/{p["allocation"]}', None), page=page_delete_allocation,
           done=lambda rt, _: rt.read(allocations.list_allocations) == [],
           checker=lambda rt, _: web_limits(rt) == []),
    Change('end a session', Topic.SESSIONS, prepare=with_agent,
           api=lambda p: ('POST', f'/api/v1/sessions/{p["session"]}/end', None),
           done=lambda rt, p: read(rt, select(SESSIONS.c.ended_at).where(SESSIONS.c.id == p['session'])) is not None,
           checker=lambda rt, p: rt.checker is not None and p['session'] not in
           {key[2] for key in rt.checker.counters.snapshot()}),
    Change('set a price', Topic.PRICES,
           api=lambda _: ('PUT', '/api/v1/prices', {'provider': 'acme', 'model': 'm1', 'input_usd_per_mtok': '1',
                                                     'output_usd_per_mtok': '2'}),
           done=lambda rt, _: read(rt, select(PRICE_OVERRIDES.c.output_micros_per_mtok)
                                   .where(PRICE_OVERRIDES.c.model == 'm1')) == 2_000_000,
           checker=lambda rt, _: True),
    Change('create an API token', Topic.ACCOUNTS,  # the first token: from then on the API wants one
           api=lambda _: ('POST', '/api/v1/tokens', {'name': 'grafana', 'role': 'read'}),
           page=page_create_token, cli=lambda _: ['token', 'create', '--role', 'read', '--name', 'grafana'],
           done=lambda rt, _: token_roles(rt) == {'grafana': 'read'},
           checker=lambda rt, _: rt.accounts.secured),
    Change('prune old events', Topic.RETENTION, prepare=with_old_event,
           api=lambda _: ('POST', '/api/v1/usage/prune', {'older_than_days': 1}),
           cli=lambda _: ['prune', '--older-than', '1d'],
           done=lambda rt, _: read(rt, select(func.count()).select_from(EVENTS)) == 0,
           checker=lambda rt, _: True),
    Change('re-price events', Topic.USAGE, recounts=1, prepare=with_new_price,
           api=lambda p: ('POST', '/api/v1/prices/recalculate', {'from': p['from']}),
           cli=lambda p: ['prices', 'recalculate', '--from', p['from']],
           done=lambda rt, p: read(rt, select(EVENTS.c.cost_micros).where(EVENTS.c.id == p['event'])) == 15_000,
           checker=lambda rt, _: rt.checker is not None and rt.checker.counters.snapshot() == recounted(rt)),
    Change('add a task', Topic.TASKS,
           api=lambda _: ('POST', '/api/v1/tasks', {'id': 'nightly', 'title': 'Nightly run'}),
           done=lambda rt, _: read(rt, select(TASKS.c.title).where(TASKS.c.id == 'nightly')) == 'Nightly run',
           checker=lambda rt, _: True),
]
CASES = [pytest.param(change, surface, id=f'{change.name}-{surface}') for change in CHANGES
         for surface in ('api', 'page', 'cli') if surface == 'api' or getattr(change, surface) is not None]


async def make(change: Change, surface: str, user: User, prepared: Prepared) -> None:
    if surface == 'api':
        method, path, body = change.api(prepared)
        response = await user.http_client.request(method, path, json=body)
        assert response.status_code < 300, response.text
    elif surface == 'page':
        assert change.page is not None
        await change.page(user, prepared)
    else:
        assert change.cli is not None
        argv = [*change.cli(prepared), '--db', runtime.current().settings.database_url]
        assert await asyncio.to_thread(cli.main, argv) == 0


async def quiet(events: list[LiveEvent], for_s: float = 0.3) -> None:
    """Until nothing has been published for `for_s`."""
    seen = -1
    while seen != len(events):
        seen = len(events)
        await asyncio.sleep(for_s)


@pytest.mark.parametrize(('change', 'surface'), CASES)
async def test_a_change_is_the_same_from_every_surface(user: User, change: Change, surface: str) -> None:
    await user.open('/')
    rt = runtime.current()
    assert rt.checker is not None
    events: list[LiveEvent] = []
    unsubscribe = rt.hub.subscribe(events.append)
    try:
        prepared = await asyncio.to_thread(change.prepare, rt)
        await quiet(events)  # what preparing set off (an alert's notifications) is over
        events.clear()
        recounts = rt.checker.recounts
        await make(change, surface, user, prepared)
        await settle(lambda: change.done(rt, prepared))
        await asyncio.sleep(0.2)  # anything published late would show now
    finally:
        unsubscribe()
    assert [e.topic for e in events] == [change.topic], f'{change.name} from the {surface}: {events}'
    assert change.checker(rt, prepared), f'the checker did not follow: {change.name} from the {surface}'
    assert rt.checker.recounts - recounts == change.recounts


@pytest.mark.parametrize('surface', ['api', 'page'])
async def test_sync_now_is_the_same_from_every_surface(openrouter_source: str, user: User, surface: str) -> None:
    """A configured source (a real puller against a fake OpenRouter): the dashboard's button and the API."""
    await user.open('/')
    rt = runtime.current()
    events: list[LiveEvent] = []
    unsubscribe = rt.hub.subscribe(events.append)
    try:
        if surface == 'api':
            response = await user.http_client.post('/api/v1/sync/all')
            assert response.status_code == 200 and response.json()['runs'][0]['status'] == 'ok', response.text
        else:
            user.find(marker='sync-now').click()
        await settle(lambda: any(e.topic == Topic.SYNC for e in events), timeout=10)
        await asyncio.sleep(0.2)
    finally:
        unsubscribe()
    assert [e.topic for e in events] == [Topic.SYNC]
