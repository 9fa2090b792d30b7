"""What is left (GET /budget/remaining, the MCP tool get_budget): the day's gauge beside the decision a call would get
now, from the checker's counters; a read that raises no alert and holds nothing, on both databases."""
from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from services.alerting import alerts
from services.budget import policies
from services.budget.checker import Checker, CheckRequest
from services.budget.remaining import remaining
from services.core.context import BudgetContext
from services.core.errors import Unavailable
from services.live.hub import EventHub
from services.usage.ledger import Ledger
from tests.support.api import uid
from tests.support.ledger import spend

ZONE = ZoneInfo('UTC')


def test_remaining_per_agent_and_day_without_alerts(ledger: Ledger, engine: Engine, hub: EventHub) -> None:
    with engine.begin() as conn:
        policies.create_policy(conn, policies.validate({'name': uid('global'), 'limit_usd': '5'}))
        policies.create_policy(conn, policies.validate({'name': uid('agent'), 'scope': 'agent', 'scope_value': 'a1',
                                                        'limit_usd': '1', 'action': 'block'}))
    checker = Checker(engine, hub, ZONE)
    checker.start()
    spend(ledger, '0.40', agent_id='a1')
    with engine.connect() as conn:
        left = remaining(conn, BudgetContext(ZONE), checker, agent_id='a1')
    assert left['decision'] == 'allow' and left['agent_id'] == 'a1'
    assert left['day']['spent_micros'] == 400_000  # the gauge's limit is the day limit: none set here
    assert sorted(p['remaining_micros'] for p in left['policies']) == [600_000, 4_600_000]

    spend(ledger, '0.60', agent_id='a1')  # the agent's $1 is spent
    with engine.connect() as conn:
        left = remaining(conn, BudgetContext(ZONE), checker, agent_id='a1')
        other = remaining(conn, BudgetContext(ZONE), checker, agent_id='a2')
        raised = [a['type'] for a in alerts.list_alerts(conn, 'all')]
    assert left['decision'] == 'block' and not left['allowed'] and left['reasons']
    assert 'policy_violation' not in raised  # no call was refused: a read raises no violation
    assert other['decision'] == 'allow' and other['day']['spent_micros'] == 1_000_000
    # what a check says, without holding anything: the same decision and remaining
    checked = checker.check(CheckRequest('a1'), deferred=[])
    assert [p['remaining_micros'] for p in checked['policies']] == [p['remaining_micros'] for p in left['policies']]


def test_no_checker_is_unavailable(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(Unavailable, match='budget checks are not running'):
        remaining(conn, BudgetContext(ZONE), None, agent_id='a1')
