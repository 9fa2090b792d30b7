"""Agents: the last request's model and cost, the recent window, the dashboard's order, and how many queries that takes
(on SQLite and PostgreSQL, with real ledger spend)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.spend import agents
from services.usage.ledger import Ledger
from tests.support.queries import counting_queries

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def call(ledger: Ledger, agent: str, cost_usd: str, minutes: int, model: str = 'gpt-4o') -> None:
    status, _ = ledger.record({'model': model, 'provider': 'openai', 'agent_id': agent, 'cost_usd': cost_usd,
                               'ts': T0 + timedelta(minutes=minutes)})
    assert status == 'stored'


def test_the_last_request_says_which_model_and_what_it_cost(ledger: Ledger) -> None:
    call(ledger, 'planner', '0.30', 1, 'claude-sonnet-4-5')
    call(ledger, 'planner', '0.0072', 5)  # the newest
    call(ledger, 'planner', '0.50', 3, 'gpt-4o-mini')  # recorded late, but older
    for minute in range(12):
        call(ledger, 'coder', f'0.0{minute % 10}', 10 + minute, 'o3' if minute == 11 else 'gpt-4o')
    with ledger.engine.connect() as conn:
        found = {a['id']: a for a in agents.list_agents(conn)}
    planner, coder = found['planner'], found['coder']
    assert (planner['last_model'], planner['last_cost_micros'], Decimal(planner['last_cost_usd'])) == \
        ('gpt-4o', 7_200, Decimal('0.0072'))
    assert planner['recent_requests'] == 3 and planner['avg_cost_per_request_micros'] == 269_067
    assert (coder['last_model'], coder['last_cost_micros']) == ('o3', 10_000)
    # the last 10 of 12 (minutes 2 to 11), newest first: 1, 0, 9, 8, 7 | 6, 5, 4, 3, 2 cents
    assert coder['recent_requests'] == 10 and coder['avg_cost_per_request_micros'] == 45_000
    assert coder['trend'] == 'up'


def test_listing_takes_the_same_queries_for_three_agents_as_for_forty(ledger: Ledger) -> None:
    def selects() -> int:
        with counting_queries(ledger.engine, selects_only=True) as statements, ledger.engine.connect() as conn:
            listed = agents.list_agents(conn)
        assert all(a['recent_requests'] > 0 and a['last_model'] == 'gpt-4o' for a in listed)
        return len(statements)

    for n in range(3):
        call(ledger, f'few-{n}', '0.01', n)
        call(ledger, f'few-{n}', '0.02', n + 1)
    few = selects()
    for n in range(37):
        call(ledger, f'many-{n}', '0.01', n)
    assert selects() == few <= 3


def test_the_dashboard_order_is_spend_today_then_name(ledger: Ledger) -> None:
    for agent, cost in (('zulu', '0.50'), ('alpha', '0.10'), ('mike', '0.50'), ('idle-b', '0.00'), ('idle-a', '0')):
        call(ledger, agent, cost, 1)
    call(ledger, 'alpha', '0.01', 30)  # the most recent request changes nothing
    spent_today = {'zulu': 500_000, 'alpha': 110_000, 'mike': 500_000, 'idle-b': 0}
    with ledger.engine.connect() as conn:
        listed = agents.top_spenders(conn, spent_today, 4)
        assert [a['id'] for a in agents.top_spenders(conn, spent_today, 2)] == ['mike', 'zulu']
        assert agents.top_spenders(conn, {}, 3)[0]['id'] == 'alpha'  # a quiet day: by name
    assert [(a['id'], a['today_cost_micros']) for a in listed] == \
        [('mike', 500_000), ('zulu', 500_000), ('alpha', 110_000), ('idle-a', 0)]
    assert listed[2]['last_cost_micros'] == 10_000
