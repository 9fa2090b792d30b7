"""The dashboard snapshot: every field is exactly the type DashboardSnapshot declares for it, on SQLite and
PostgreSQL, with every part filled (spend, tasks, a plan, alerts, a sync run with a bill, an eco-mode delivery)."""
from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime
from typing import get_type_hints
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from services.accounts.refusals import RefusalLog
from services.alerting import alerts
from services.alerting.notify import Backoff, Notifier
from services.budget import eco, limits
from services.core.context import BudgetContext
from services.core.settings import NotifySettings
from services.dashboard import TOP_AGENTS, DashboardConfig, DashboardSnapshot, load_dashboard
from services.live.hub import EventHub
from services.live.topics import EcoChanged
from services.sources.openrouter import OpenRouterPuller
from services.sources.sync import SyncService
from services.spend import tasks
from services.usage.ledger import Ledger
from tests.support.fake_api import FakeAPI, Reply
from tests.support.fixtures import FIXTURES
from tests.support.ledger import spend
from tests.support.queries import counting_queries
from tests.support.typed import assert_conforms

UTC_ZONE = ZoneInfo('UTC')


async def test_every_field_is_its_declared_type(ledger: Ledger, hub: EventHub) -> None:
    engine = ledger.engine
    for n in range(TOP_AGENTS + 2):  # the top agents and 'others'
        spend(ledger, f'0.0{n + 1}', agent_id=f'agent-{n}', session_id='s-1', task_id='t-done', channel='litellm')
    spend(ledger, '0.02')  # no agent
    ledger.record({'model': 'typed-unknown-model', 'provider': 'openai', 'input_tokens': 10})
    with engine.begin() as conn:
        tasks.create_task(conn, 'Done', 't-done', 'agent-0', 'done', estimated_cost_micros=10_000)
        tasks.create_task(conn, 'Next', 't-next', 'agent-0', priority=2)
        tasks.create_task(conn, 'Later', 't-later', priority=1, estimated_cost_micros=10**12)
        alerts.raise_alert(conn, 'anomaly', 'warning', 'typed', 'typed:1', {'agent_id': 'agent-0'})
        eco.set_eco(conn, True, 'manual')
        limits.set_limit(conn, 'day', 50_000_000)
    with FakeAPI() as api:
        api.route('/api/v1/key', json.loads((FIXTURES / 'providers' / 'openrouter_key.json').read_text()))
        api.route('/eco', Reply(status=500), method='POST')
        sync = SyncService(engine, {'openrouter_direct': OpenRouterPuller('sk-typed', api.url, retries=0)}, hub)
        assert (await sync.run('openrouter_direct'))['status'] == 'ok'
        await sync.aclose()
        notifier = Notifier(engine, NotifySettings(n8n_webhook_url=f'{api.url}/eco'), hub,
                            BudgetContext(UTC_ZONE), Backoff(base_s=60))
        notifier.start()
        try:
            await notifier.notify_eco(EcoChanged(True, 'manual'))
        finally:
            await notifier.stop()

    refusals = RefusalLog(hub)
    refusals.refused('spendgauge-litellm-callback', 'POST /api/v1/usage/batch', 401, 'the token is not valid')
    refusals.accepted('spendgauge-litellm-callback')
    with engine.connect() as conn:
        snapshot = load_dashboard(conn, DashboardConfig(BudgetContext(UTC_ZONE), ('openrouter_direct',)),
                                  datetime.now(UTC), refused=refusals.snapshot())
    declared = get_type_hints(DashboardSnapshot)
    for field in fields(DashboardSnapshot):
        value = getattr(snapshot, field.name)
        assert value not in (None, []), f'{field.name} is empty: the test does not exercise it'
        assert_conforms(declared[field.name], value, field.name)
    assert snapshot.by_agent[-1]['label'] == 'others (3)'  # 12 agents and the calls without one
    assert any(cell['billed_micros'] is not None for cell in snapshot.reconciliation)
    assert snapshot.plan is not None and snapshot.plan['run_now'] and snapshot.plan['defer']


def test_an_empty_database_gives_an_empty_snapshot(engine: Engine) -> None:
    with engine.connect() as conn:
        snapshot = load_dashboard(conn, DashboardConfig(BudgetContext(UTC_ZONE)))
    declared = get_type_hints(DashboardSnapshot)
    for field in fields(DashboardSnapshot):
        assert_conforms(declared[field.name], getattr(snapshot, field.name), field.name)
    assert (snapshot.agents, snapshot.eco_delivery, snapshot.alerts['unacknowledged']) == ([], None, 0)


def test_a_load_takes_the_same_queries_for_three_agents_sessions_and_tasks_as_for_forty(ledger: Ledger) -> None:
    """No read per agent, session or task: the statement count does not grow with what the history holds."""
    engine = ledger.engine
    config = DashboardConfig(BudgetContext(UTC_ZONE))

    def selects() -> int:
        with counting_queries(engine, selects_only=True) as statements, engine.connect() as conn:
            snapshot = load_dashboard(conn, config)
        assert snapshot.agents and snapshot.sessions and snapshot.tasks
        return len(statements)

    def add(prefix: str, count: int) -> None:
        for n in range(count):
            spend(ledger, '0.01', agent_id=f'{prefix}-agent-{n}', session_id=f'{prefix}-session-{n}',
                  task_id=f'{prefix}-task-{n}')
            with engine.begin() as conn:
                tasks.create_task(conn, f'Task {n}', f'{prefix}-task-{n}', f'{prefix}-agent-{n}', priority=n)

    add('few', 3)
    few = selects()
    add('many', 37)
    assert selects() <= few  # one fewer: with three agents the cards are filled up with idle ones (one more read)
