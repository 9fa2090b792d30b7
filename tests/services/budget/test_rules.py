"""The budget rules without a database: the ladder, the action's cap, pacing, scope matching and the words."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.budget.checker import CheckRequest
from services.budget.policies import PolicyRule
from services.budget.rules import (
    MAX_RETRY_S,
    SESSION_RETRY_S,
    Step,
    capped,
    crossing_message,
    custom_span,
    dedupe_key,
    pace_wait,
    percent,
    reason,
    scope_keys,
    step_for,
    violation_message,
)
from services.core.periods import period_containing
from services.live.topics import SpendRow


def rule(limit: int = 1_000_000, soft: int = 80, critical: int = 95, action: str = 'block', scope: str = 'global',
         scope_value: str | None = None, period: str = 'day', name: str = 'p') -> PolicyRule:
    return PolicyRule(1, name, scope, scope_value, period, None, None, limit, soft, critical, action, (), False, True,
                      'api')


@pytest.mark.parametrize(('spent', 'estimate', 'expected'), [
    (0, 0, Step.ALLOW), (799_999, 0, Step.ALLOW), (800_000, 0, Step.WARN), (700_000, 100_000, Step.WARN),
    (949_999, 0, Step.WARN), (950_000, 0, Step.THROTTLE), (900_000, 50_000, Step.THROTTLE),
    (999_999, 0, Step.THROTTLE), (999_999, 1, Step.THROTTLE), (999_999, 2, Step.BLOCK), (1_000_000, 0, Step.BLOCK),
    (1_500_000, 0, Step.BLOCK), (0, 1_000_001, Step.BLOCK), (0, 1_000_000, Step.THROTTLE),
])
def test_step_for_spent_and_estimate(spent: int, estimate: int, expected: Step) -> None:
    assert step_for(spent, estimate, rule()) is expected


@pytest.mark.parametrize(('action', 'step', 'expected'), [
    ('block', Step.BLOCK, Step.BLOCK), ('throttle', Step.BLOCK, Step.THROTTLE), ('warn', Step.THROTTLE, Step.WARN),
    ('ignore', Step.BLOCK, Step.ALLOW), ('warn', Step.ALLOW, Step.ALLOW), ('throttle', Step.WARN, Step.WARN),
])
def test_the_action_caps_the_step(action: str, step: Step, expected: Step) -> None:
    assert capped(step, rule(action=action)) is expected


def test_steps_name_their_decision() -> None:
    assert [s.decision for s in Step] == ['allow', 'warn', 'throttle', 'block']


def test_percent_of_a_zero_limit() -> None:
    assert percent(250_000, 1_000_000) == 25.0
    assert percent(1, 3) == 33.3
    assert percent(0, 0) == 0.0 and percent(5, 0) == 100.0


def test_pace_wait_spreads_the_rest_of_the_period() -> None:
    zone = ZoneInfo('UTC')
    day = period_containing('day', datetime(2026, 5, 4, 6, tzinfo=UTC), zone)
    # at 06:00, 96% of the day's limit: an even pace reaches 96% at 23:02:24, capped at MAX_RETRY_S
    assert pace_wait(960_000, 1_000_000, day, datetime(2026, 5, 4, 6, tzinfo=UTC)) == MAX_RETRY_S
    # at 23:00 the pace allows 96% 144 seconds later
    assert pace_wait(960_000, 1_000_000, day, datetime(2026, 5, 4, 23, tzinfo=UTC)) == 144
    # past that time: one second, never zero or negative
    assert pace_wait(500_000, 1_000_000, day, datetime(2026, 5, 4, 23, tzinfo=UTC)) == 1
    # over the limit late in the day: no later than the period's end
    assert pace_wait(2_000_000, 1_000_000, day, datetime(2026, 5, 4, 23, 59, tzinfo=UTC)) == 60
    assert pace_wait(960_000, 1_000_000, None, datetime(2026, 5, 4, tzinfo=UTC)) == SESSION_RETRY_S


def test_custom_span_covers_whole_local_days() -> None:
    policy = PolicyRule(1, 'launch', 'global', None, 'custom', date(2026, 3, 28), date(2026, 3, 29), 1, 80, 95,
                        'block', (), False, True, 'api')
    span = custom_span(policy, ZoneInfo('Europe/Berlin'))  # the clocks go forward on the 29th
    assert span.start == datetime(2026, 3, 27, 23, tzinfo=UTC)
    assert span.end == datetime(2026, 3, 29, 22, tzinfo=UTC)
    assert span.end - span.start == timedelta(hours=47)


def row(**fields: object) -> SpendRow:
    values: dict[str, Any] = {'ts': datetime(2026, 1, 1, tzinfo=UTC), 'cost_micros': 1, 'agent_id': None,
                              'session_id': None, 'user_id': None, 'project': None, 'tags': (), 'provider': 'openai',
                              'model': 'gpt-4o', **fields}
    return SpendRow(**values)


def test_scope_keys_match_rows_and_requests_alike() -> None:
    each_agent = scope_keys(rule(scope='agent'))
    coder = scope_keys(rule(scope='agent', scope_value='coder'))
    each_tag = scope_keys(rule(scope='tag'))
    nightly = scope_keys(rule(scope='tag', scope_value='nightly'))
    provider = scope_keys(rule(scope='provider', scope_value='openai'))
    assert scope_keys(rule())(row()) == ['']
    for item in (row(agent_id='coder', tags=('nightly', 'x', 'nightly')),
                 CheckRequest(agent_id='coder', tags=('nightly', 'x', 'nightly'), provider='openai')):
        assert each_agent(item) == ['coder'] and coder(item) == ['coder']
        assert each_tag(item) == ['nightly', 'x'] and nightly(item) == ['nightly']
        assert provider(item) == ['openai']
    other = CheckRequest(agent_id='writer', provider='anthropic')
    assert coder(other) == [] and nightly(other) == [] and provider(other) == [] and each_tag(other) == []
    assert each_agent(CheckRequest()) == []


def test_words_of_reasons_and_alerts() -> None:
    policy = rule(name='daily cap', scope='agent')
    assert reason(policy, 'coder', Step.BLOCK, 900_000, 200_000, Step.BLOCK) == (
        'daily cap (agent coder): $0.90 spent + $0.20 estimated would cross the limit of $1.00')
    assert reason(rule(name='cap', action='warn'), '', Step.THROTTLE, 960_000, 0, Step.WARN) == (
        'cap: $0.96 spent + $0.00 estimated reaches the critical threshold 95% of $1.00; action warn caps it at warn')
    assert crossing_message(policy, 'coder', 1_150_000, True) == (
        'daily cap (agent coder): $1.15 of $1.00 (115.0%) this day; agent paused')
    assert violation_message(policy, 1_000_000, 10_000) == (
        'blocked by daily cap: $1.00 spent + $0.01 estimated exceeds $1.00')
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert dedupe_key('limit_exceeded', policy, 'coder', start) == \
        'policy:1:coder:2026-01-01T00:00:00+00:00:limit_exceeded'
    assert dedupe_key('policy_violation', policy, '', 's-1') == 'policy:1::s-1:policy_violation'
