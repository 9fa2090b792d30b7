"""The planner: the exact search against brute force and a dense reference DP on random instances (hypothesis),
the greedy's bound, estimates from real ledger history on SQLite and PostgreSQL, the REST endpoint on the shared
server, and the dashboard panel through NiceGUI's simulated user."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nicegui.testing import User

from app import runtime
from services.insights import planner
from services.insights.planner import MICROS_PER_CENT, PlanTask, Priority, plan
from services.spend import tasks
from services.usage.ledger import Ledger
from tests.support.api import assert_client_error, assert_money, record, summary, uid
from tests.support.pages import PATIENT
from tests.support.servers import start_server

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
CENT = MICROS_PER_CENT


# --- the pure core against brute force --------------------------------------------------------------------------

def micros_of(task: PlanTask) -> int:
    assert task.cost_micros is not None, task
    return task.cost_micros


def cents_of(task: PlanTask) -> int:
    """The estimate in whole cents, rounded up, as the planner counts it against the budget."""
    return -(-micros_of(task) // CENT)


def brute_force(items: list[PlanTask], remaining_micros: int, now: datetime = NOW) -> Priority:
    """The best total priority over every subset of the runnable tasks whose cents fit the budget's cents."""
    runnable = [t for t in items if t.cost_micros is not None and (t.deadline is None or t.deadline > now)]
    capacity = remaining_micros // CENT
    cents = [cents_of(t) for t in runnable]
    costs: list[int] = [0]
    values: list[Priority] = [0]
    for mask in range(1, 1 << len(runnable)):  # each subset is a smaller one plus its lowest task
        low = (mask & -mask).bit_length() - 1
        rest = mask & (mask - 1)
        costs.append(costs[rest] + cents[low])
        values.append(values[rest] + runnable[low].priority)
    return max(v for c, v in zip(costs, values, strict=True) if c <= capacity)


priorities = st.one_of(st.integers(0, 60), st.decimals(0, 60, places=2, allow_nan=False, allow_infinity=False))


@st.composite
def instances(draw: st.DrawFn, whole_cents: bool = True) -> tuple[list[PlanTask], int]:
    n = draw(st.integers(0, 12))
    items = []
    for i in range(n):
        cents = draw(st.integers(0, 4000))
        extra = 0 if whole_cents else draw(st.integers(0, CENT - 1))
        priority = draw(st.one_of(priorities, st.just(Decimal(cents) / 100)))  # priority = cost: no ratio helps
        expired = draw(st.sampled_from([None, None, None, NOW - timedelta(minutes=1), NOW + timedelta(hours=1)]))
        items.append(PlanTask(f't{i}', priority, cents * CENT + extra, expired))
    remaining = draw(st.integers(0, 200) | st.integers(0, 40_000)) * CENT + draw(st.integers(0, CENT - 1))
    return items, remaining


def check_plan(result: planner.Plan, items: list[PlanTask], remaining: int) -> None:
    ids = [t.id for t in result.run_now] + [d.task.id for d in result.defer]
    assert sorted(ids) == sorted(t.id for t in items), 'every task is either run or deferred, once'
    assert result.used_micros == sum(t.cost_micros or 0 for t in result.run_now) <= remaining
    assert result.remaining_after_micros == remaining - result.used_micros >= 0
    assert result.total_priority == sum((t.priority for t in result.run_now), 0)
    costs = [micros_of(t) for t in result.run_now]
    ratios = [(cost > 0, -Fraction(t.priority) / cost if cost else 0)
              for t, cost in zip(result.run_now, costs, strict=True)]
    assert ratios == sorted(ratios), 'free tasks first, then by priority per dollar'
    for deferred in result.defer:
        task = deferred.task
        if deferred.reason == 'after_deadline':
            assert task.deadline is not None and task.deadline <= NOW
        elif deferred.reason == 'over_budget':
            assert cents_of(task) > remaining // CENT
        else:
            assert deferred.reason == 'lower_value'
            assert cents_of(task) <= remaining // CENT, 'deferred for value, so it fits alone'
    for task in result.run_now:
        assert task.deadline is None or task.deadline > NOW


@settings(max_examples=400, deadline=None)
@given(instances())
def test_exact_plan_matches_brute_force(instance: tuple[list[PlanTask], int]) -> None:
    items, remaining = instance
    result = plan(items, remaining, NOW)
    assert result.method == 'exact' and result.bound == 1
    check_plan(result, items, remaining)
    assert result.total_priority == brute_force(items, remaining)


@settings(max_examples=200, deadline=None)
@given(instances(whole_cents=False))
def test_costs_in_micros_are_never_over_budget(instance: tuple[list[PlanTask], int]) -> None:
    """Costs round up to cents and the budget down: optimal at cent resolution, never a micro-dollar over."""
    items, remaining = instance
    result = plan(items, remaining, NOW)
    check_plan(result, items, remaining)
    assert result.total_priority == brute_force(items, remaining)


@settings(max_examples=300, deadline=None)
@given(instances())
def test_greedy_fallback_has_at_least_half_the_optimum(instance: tuple[list[PlanTask], int]) -> None:
    items, remaining = instance
    result = plan(items, remaining, NOW, exact_work=0)
    check_plan(result, items, remaining)
    best = brute_force(items, remaining)
    assert result.total_priority <= best
    assert 2 * result.total_priority >= best
    assert result.bound >= Fraction(1, 2)
    assert Fraction(result.total_priority) >= result.bound * Fraction(best), 'the stated bound holds'
    if result.method == 'greedy':
        assert result.as_dict()['bound'] <= float(result.bound)


def dense_optimum(weights: list[int], values: list[Priority], capacity: int) -> Priority:
    best: list[Priority] = [0] * (capacity + 1)
    for w, v in zip(weights, values, strict=True):
        for c in range(capacity, w - 1, -1):
            best[c] = max(best[c], best[c - w] + v)
    return best[capacity]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 300), st.integers(1, 40)), min_size=13, max_size=80),
       st.integers(1, 2000), st.booleans())
def test_exact_plan_matches_a_dense_dp_on_larger_instances(pairs: list[tuple[int, int]], capacity: int,
                                                           proportional: bool) -> None:
    """Beyond brute force: the Pareto search with its bounds against the textbook DP over every capacity."""
    items = [PlanTask(f't{i}', cents if proportional else value, cents * CENT) for i, (cents, value) in
             enumerate(pairs)]
    result = plan(items, capacity * CENT, NOW)
    assert result.method == 'exact'
    fitting = [(micros_of(t) // CENT, t.priority) for t in items if micros_of(t) <= capacity * CENT]
    assert result.total_priority == dense_optimum([w for w, _ in fitting], [v for _, v in fitting], capacity)
    assert result.used_micros <= capacity * CENT


def test_reasons_free_tasks_and_order() -> None:
    items = [
        PlanTask('late', 100, 10 * CENT, NOW - timedelta(seconds=1)),
        PlanTask('due-now', 100, 10 * CENT, NOW),
        PlanTask('later', 1, 10 * CENT, NOW + timedelta(hours=2)),
        PlanTask('unknown', 50, None),
        PlanTask('huge', 1000, 10_001 * CENT),
        PlanTask('free', 0, 0),
        PlanTask('free-tiny', 3, 9_999),  # under a cent still costs a cent: not free
        PlanTask('worthless', 0, 5 * CENT),
        PlanTask('negative', -5, 0),
        PlanTask('good', 30, 3_000 * CENT),
        PlanTask('better', 60, 5_000 * CENT),
        PlanTask('best', 70, 7_001 * CENT),  # with 'good' a cent over; alone worth less than better + good
    ]
    result = plan(items, 100 * 1_000_000 + 5_000, NOW)  # $100.005: 10,000 cents
    assert [t.id for t in result.run_now] == ['free', 'free-tiny', 'later', 'better', 'good']
    assert result.total_priority == 94
    assert result.used_micros == 8_010 * CENT + 9_999
    assert result.remaining_after_micros == 100_005_000 - result.used_micros
    reasons = {d.task.id: d.reason for d in result.defer}
    assert reasons == {'late': 'after_deadline', 'due-now': 'after_deadline', 'unknown': 'no_estimate',
                       'huge': 'over_budget', 'worthless': 'lower_value', 'negative': 'lower_value',
                       'best': 'lower_value'}
    answer = result.as_dict()
    assert [d['id'] for d in answer['defer']] == ['huge', 'best', 'worthless', 'negative', 'due-now', 'late',
                                                  'unknown']
    assert answer['defer'][0]['detail'] == 'costs $100.01, more than the $100.00 left (whole cents)'
    assert answer['run_now'][0] == {'id': 'free', 'priority': 0, 'cost_micros': 0, 'cost_usd': '0.000000',
                                    'estimated': False, 'estimate_basis': None, 'agent_id': None, 'deadline': None}
    assert (answer['method'], answer['bound'], answer['bound_note']) == ('exact', 1.0, 'optimal')
    assert_money(answer, 'budget', 100_005_000)
    assert_money(answer, 'remaining_after', result.remaining_after_micros)
    assert_money(answer, 'scheduled_cost', result.used_micros)


def test_ties_in_ratio_prefer_higher_priority_then_the_earlier_deadline() -> None:
    items = [PlanTask('b-late', 2, 2 * CENT, NOW + timedelta(hours=3)), PlanTask('small', 1, CENT),
             PlanTask('a-none', 2, 2 * CENT), PlanTask('c-soon', 2, 2 * CENT, NOW + timedelta(hours=1))]
    result = plan(items, 10 * CENT, NOW)
    assert [t.id for t in result.run_now] == ['c-soon', 'b-late', 'a-none', 'small']


def test_the_greedy_fallback_states_its_bound() -> None:
    items = [PlanTask('big', 8, 9 * CENT), *[PlanTask(f's{i}', 1, CENT) for i in range(5)]]
    greedy = plan(items, 10 * CENT, NOW, exact_work=0)
    exact = plan(items, 10 * CENT, NOW)
    assert (exact.method, exact.total_priority, [t.id for t in exact.run_now]) == ('exact', 9, ['s0', 'big'])
    assert (greedy.method, greedy.total_priority, [t.id for t in greedy.run_now]) == ('greedy', 8, ['big'])
    assert greedy.bound == Fraction(8) / (5 + Fraction(5 * 8, 9)), 'its value over the fractional optimum'
    answer = greedy.as_dict()
    assert (answer['method'], answer['bound']) == ('greedy', 0.847)
    assert answer['bound_note'].startswith('at least 84.7% of the optimal')  # 0.84705...: rounded down
    assert 'greedy guarantees 50%' in answer['bound_note']
    assert answer['exact_limit_cells'] == 0


def test_a_plan_that_outgrows_the_work_budget_falls_back_to_the_greedy() -> None:
    """Priority equal to cost defeats the bound: the frontier grows with every task until the budget is spent."""
    items = [PlanTask(f't{i}', 1000 + 7 * i, (1000 + 7 * i) * CENT) for i in range(60)]
    small = plan(items, 20_000 * CENT, NOW, exact_work=1_000)
    assert small.method == 'greedy' and small.bound >= Fraction(1, 2)
    assert small.used_micros <= 20_000 * CENT
    full = plan(items, 20_000 * CENT, NOW)
    assert full.method == 'exact' and full.total_priority >= small.total_priority
    assert full.total_priority == dense_optimum([micros_of(t) // CENT for t in items], [t.priority for t in items],
                                                20_000)


def test_everything_that_fits_runs_and_an_empty_plan_is_valid() -> None:
    items = [PlanTask('a', 1, CENT), PlanTask('b', 2, 2 * CENT)]
    result = plan(items, 3 * CENT, NOW)
    assert ([t.id for t in result.run_now], result.remaining_after_micros) == (['b', 'a'], 0)  # same ratio
    empty = plan([], 0, NOW)
    assert (empty.run_now, empty.defer, empty.total_priority, empty.method) == ((), (), 0, 'exact')


@pytest.mark.parametrize(('items', 'remaining', 'field'), [
    ([PlanTask('a', 1, CENT), PlanTask('a', 2, CENT)], CENT, 'tasks.1.id: duplicate'),
    ([PlanTask('', 1, CENT)], CENT, 'tasks.0.id'),
    ([PlanTask('a', 1, -1)], CENT, 'tasks.0.estimated_cost_usd'),
    ([PlanTask('a', Decimal('NaN'), CENT)], CENT, 'tasks.0.priority'),
    ([PlanTask('a', 1, CENT)], -1, 'remaining_usd'),
    ([PlanTask(f't{i}', 1, CENT) for i in range(planner.MAX_TASKS + 1)], CENT, 'tasks: at most'),
])
def test_bad_input_is_refused(items: list[PlanTask], remaining: int, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        plan(items, remaining, NOW)


def test_median_rounds_up_to_a_micro_dollar() -> None:
    assert planner.median_micros([]) is None
    assert planner.median_micros([5, 1, 3]) == 3
    assert planner.median_micros([1, 2]) == 2
    assert planner.median_micros([10, 20, 30, 40]) == 25


# --- estimates from history (SQLite and PostgreSQL) -------------------------------------------------------------

def finished(ledger: Ledger, task_id: str, agent_id: str | None, *costs: str, status: str = 'done') -> None:
    with ledger.engine.begin() as conn:
        tasks.create_task(conn, task_id, task_id, agent_id, status, now=NOW)
    for cost in costs:
        status_, _ = ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'task_id': task_id, 'cost_usd': cost,
                                    'agent_id': agent_id, 'ts': NOW})
        assert status_ == 'stored'


def test_missing_estimates_come_from_the_agents_finished_tasks(ledger: Ledger) -> None:
    pending = [PlanTask('p-coder', 5, None, agent_id='coder'), PlanTask('p-new', 4, None, agent_id='newcomer'),
               PlanTask('p-none', 3, None), PlanTask('p-given', 2, 7 * CENT, agent_id='coder')]
    with ledger.engine.connect() as conn:
        nothing = planner.estimate_missing(conn, pending)
    assert [t.cost_micros for t in nothing] == [None, None, None, 7 * CENT]
    assert plan(nothing, 10**9, NOW).as_dict()['defer'][0]['reason'] == 'no_estimate'

    finished(ledger, 'c1', 'coder', '0.10', '0.20')  # $0.30
    finished(ledger, 'c2', 'coder', '0.50')
    finished(ledger, 'c3', 'coder', '0.90')
    finished(ledger, 'c-running', 'coder', '9', status='running')  # not finished: not history
    finished(ledger, 'c-failed', 'coder', '9', status='failed')
    finished(ledger, 'c-idle', 'coder')  # done without spend: nothing to learn from
    finished(ledger, 'w1', 'writer', '2.00')
    with ledger.engine.connect() as conn:
        by_agent, overall = planner.history_estimates(conn)
        filled = {t.id: t for t in planner.estimate_missing(conn, pending)}
    assert by_agent == {'coder': 500_000, 'writer': 2_000_000}
    assert overall == 700_000  # median of 0.30, 0.50, 0.90, 2.00
    assert (filled['p-coder'].cost_micros, filled['p-coder'].estimate_basis) == (500_000, 'agent')
    assert (filled['p-new'].cost_micros, filled['p-new'].estimate_basis) == (700_000, 'all_agents')
    assert (filled['p-none'].cost_micros, filled['p-none'].estimate_basis) == (700_000, 'all_agents')
    assert (filled['p-given'].cost_micros, filled['p-given'].estimated) == (7 * CENT, False)
    item = plan(list(filled.values()), 10**9, NOW).as_dict()['run_now']
    coder = next(t for t in item if t['id'] == 'p-coder')
    assert (coder['estimated'], coder['estimate_basis'], coder['cost_usd']) == (True, 'agent', '0.500000')


def test_open_tasks_plan_with_deadlines_from_the_table(ledger: Ledger) -> None:
    finished(ledger, 'history', 'coder', '1.50')
    with ledger.engine.begin() as conn:
        tasks.create_task(conn, 'Cheap', 'cheap', 'coder', priority=3, estimated_cost_micros=1_000_000, now=NOW)
        tasks.create_task(conn, 'Guess', 'guess', 'coder', priority=2, now=NOW)
        tasks.create_task(conn, 'Too late', 'expired', priority=9, estimated_cost_micros=1, now=NOW,
                          deadline=NOW - timedelta(hours=1))
        tasks.create_task(conn, 'Soon', 'soon', priority=1, estimated_cost_micros=1, now=NOW,
                          deadline=NOW + timedelta(hours=1))
        tasks.create_task(conn, 'Busy', 'busy', priority=9, status='running', estimated_cost_micros=1, now=NOW)
    with ledger.engine.connect() as conn:
        [expired] = [t for t in planner.open_tasks(conn) if t.id == 'expired']
        assert expired.deadline == NOW - timedelta(hours=1)
        assert planner.plan_open_tasks(conn, None, NOW) is None
        result = planner.plan_open_tasks(conn, 2_000_000, NOW)
    assert result is not None
    assert [(t['id'], t['title']) for t in result['run_now']] == [('soon', 'Soon'), ('cheap', 'Cheap')]
    assert {d['id']: d['reason'] for d in result['defer']} == {'expired': 'after_deadline', 'guess': 'lower_value'}
    [guess] = [d for d in result['defer'] if d['id'] == 'guess']
    assert (guess['cost_micros'], guess['estimate_basis']) == (1_500_000, 'agent')


# --- REST API on the shared server -------------------------------------------------------------------------------

def schedule(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post('/budget/schedule', json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_schedule_happy_path(api: httpx.Client) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    answer = schedule(api, {'remaining_usd': '10', 'tasks': [
        {'id': 'a', 'priority': 6, 'estimated_cost_usd': '6'},
        {'id': 'b', 'priority': 5, 'estimated_cost_usd': '5', 'deadline': later, 'agent_id': 'coder'},
        {'id': 'c', 'priority': 4.5, 'estimated_cost_usd': 4.5},
        {'id': 'd', 'priority': 1, 'estimated_cost_usd': '0'},
        {'id': 'e', 'priority': 100, 'estimated_cost_usd': '10.01'},
        {'id': 'f', 'priority': 100, 'estimated_cost_usd': '1', 'deadline': '2020-01-01T00:00:00Z'},
    ]})
    assert [t['id'] for t in answer['run_now']] == ['d', 'b', 'c']
    assert answer['total_priority'] == 10.5
    assert answer['run_now'][1] == {'id': 'b', 'priority': 5, 'cost_micros': 5_000_000, 'cost_usd': '5.000000',
                                    'estimated': False, 'estimate_basis': None, 'agent_id': 'coder',
                                    'deadline': datetime.fromisoformat(later).isoformat()}
    assert {d['id']: d['reason'] for d in answer['defer']} == {'a': 'lower_value', 'e': 'over_budget',
                                                               'f': 'after_deadline'}
    assert_money(answer, 'budget', 10_000_000)
    assert_money(answer, 'remaining_after', 500_000)
    assert (answer['method'], answer['bound'], answer['budget_source']) == ('exact', 1.0, 'given')
    assert answer['exact_limit_cells'] == planner.EXACT_WORK


def test_schedule_defaults_to_what_is_left_today(tmp_path: Path) -> None:
    server = start_server(tmp_path)  # the default daily limit, $5
    try:
        with server.client() as api:
            record(api, agent_id=uid('agent'), cost_usd='0.25')
            answer = schedule(api, {'tasks': [{'id': 'x', 'priority': 1, 'estimated_cost_usd': '0.01'}]})
            assert answer['budget_source'] == 'today'
            assert_money(answer, 'budget', 4_750_000)
            assert summary(api)['remaining_micros'] == 4_750_000
    finally:
        server.stop()


def test_schedule_without_a_daily_limit_asks_for_the_budget(api: httpx.Client) -> None:
    answer = api.post('/budget/schedule', json={'tasks': [{'id': 'x', 'priority': 1}]})
    assert (answer.status_code, answer.json()['detail']) == \
        (422, 'remaining_usd: no daily limit is set, so give the budget to plan against')


def test_schedule_estimates_from_the_agents_history(api: httpx.Client) -> None:
    agent = uid('agent')
    for cost in ('0.20', '0.40', '0.90'):
        task_id = uid('task')
        assert api.post('/tasks', json={'id': task_id, 'title': 'Done', 'agent_id': agent}).status_code == 201
        record(api, task_id=task_id, agent_id=agent, cost_usd=cost)
        assert api.patch(f'/tasks/{task_id}', json={'status': 'done'}).status_code == 200
    answer = schedule(api, {'remaining_usd': 5, 'tasks': [{'id': 'guess', 'priority': 2, 'agent_id': agent}]})
    [item] = answer['run_now']
    assert (item['cost_usd'], item['estimated'], item['estimate_basis']) == ('0.400000', True, 'agent')


BAD_SCHEDULES = {
    'negative priority': ({'tasks': [{'id': 'a', 'priority': -1, 'estimated_cost_usd': 1}]}, 'tasks.0.priority'),
    'NaN priority': ({'tasks': [{'id': 'a', 'priority': 'NaN', 'estimated_cost_usd': 1}]}, 'tasks.0.priority'),
    'priority a word': ({'tasks': [{'id': 'a', 'priority': 'high'}]}, 'tasks.0.priority'),
    'priority a bool': ({'tasks': [{'id': 'a', 'priority': True}]}, 'tasks.0.priority'),
    'missing priority': ({'tasks': [{'id': 'a'}]}, 'tasks.0.priority'),
    'missing id': ({'tasks': [{'priority': 1}]}, 'tasks.0.id'),
    'blank id': ({'tasks': [{'id': ' ', 'priority': 1}]}, 'tasks.0.id'),
    'duplicate ids': ({'tasks': [{'id': 'a', 'priority': 1, 'estimated_cost_usd': 1},
                                 {'id': 'a', 'priority': 2, 'estimated_cost_usd': 1}]}, 'tasks.1.id: duplicate'),
    'negative cost': ({'tasks': [{'id': 'a', 'priority': 1, 'estimated_cost_usd': '-0.01'}]},
                      'tasks.0.estimated_cost_usd'),
    'infinite cost': ({'tasks': [{'id': 'a', 'priority': 1, 'estimated_cost_usd': 'Infinity'}]},
                      'tasks.0.estimated_cost_usd'),
    'negative budget': ({'tasks': [], 'remaining_usd': -1}, 'remaining_usd'),
    'bad deadline': ({'tasks': [{'id': 'a', 'priority': 1, 'deadline': 'tomorrow'}]}, 'tasks.0.deadline'),
    'deadline out of range': ({'tasks': [{'id': 'a', 'priority': 1, 'deadline': '1990-01-01'}]}, 'deadline'),
    'tasks missing': ({}, 'tasks'),
    'tasks not a list': ({'tasks': {'id': 'a'}}, 'tasks'),
    'unknown field': ({'tasks': [{'id': 'a', 'priority': 1, 'cost': 3}]}, 'cost'),
    'too many tasks': ({'tasks': [{'id': f't{i}', 'priority': 1} for i in range(planner.MAX_TASKS + 1)]}, 'tasks'),
}


@pytest.mark.parametrize(('body', 'field'), BAD_SCHEDULES.values(), ids=BAD_SCHEDULES.keys())
def test_a_bad_schedule_is_422(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    assert_client_error(api.post('/budget/schedule', json=body), 422, mentions=field)


def test_tasks_carry_a_deadline(api: httpx.Client) -> None:
    task_id = uid('task')
    created = api.post('/tasks', json={'id': task_id, 'title': 'Due', 'deadline': '2030-01-02T03:04:05+02:00'})
    assert created.status_code == 201, created.text
    assert created.json()['deadline'] == '2030-01-02T01:04:05+00:00'
    naive = api.patch(f'/tasks/{task_id}', json={'deadline': '2030-02-01T00:00:00'}).json()
    assert naive['deadline'] == '2030-02-01T00:00:00+00:00'
    same = api.patch(f'/tasks/{task_id}', json={'deadline': '2030-02-01T00:00:00Z'}).json()
    assert same['updated_at'] == naive['updated_at'], 'the same time is no change'
    assert api.patch(f'/tasks/{task_id}', json={'deadline': None}).json()['deadline'] is None
    assert_client_error(api.patch(f'/tasks/{task_id}', json={'deadline': '1999-12-31T00:00:00Z'}), 422,
                        mentions='deadline')
    assert_client_error(api.post('/tasks', json={'title': 'x', 'deadline': 'soon'}), 422, mentions='deadline')


# --- the dashboard panel ------------------------------------------------------------------------------------------

async def test_dashboard_shows_the_plan_for_open_tasks(user: User) -> None:
    rt = runtime.current()
    with rt.engine.begin() as conn:
        tasks.create_task(conn, 'Write the summary', 'plan-a', 'writer', priority=5, estimated_cost_micros=3_000_000)
        tasks.create_task(conn, 'Crawl the site', 'plan-b', 'crawler', priority=4, estimated_cost_micros=2_500_000)
        tasks.create_task(conn, 'Huge rebuild', 'plan-c', priority=9, estimated_cost_micros=50_000_000)
        tasks.create_task(conn, 'Unknown', 'plan-d', priority=1)
        tasks.create_task(conn, 'Running', 'plan-e', priority=1, status='running', estimated_cost_micros=1)
    await user.open('/')
    await user.should_see('Plan for open tasks')
    run_now = user.find(marker='plan-run-now').elements.pop()
    assert [e.props['data-task'] for e in run_now.descendants() if 'plan-item' in e._markers] == ['plan-a']
    deferred = user.find(marker='plan-defer').elements.pop()
    reasons = {e.props['data-task']: e.props['data-reason'] for e in deferred.descendants()
               if 'plan-item' in e._markers}
    assert reasons == {'plan-b': 'lower_value', 'plan-c': 'over_budget', 'plan-d': 'no_estimate'}
    await user.should_see('Left after: $2.00')

    record_spend = rt.ledger.record
    record_spend({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '2.40'})  # $2.60 left: b instead of a
    await user.should_see('Left after: $0.10', retries=PATIENT)
    run_now = user.find(marker='plan-run-now').elements.pop()
    assert [e.props['data-task'] for e in run_now.descendants() if 'plan-item' in e._markers] == ['plan-b']


async def test_dashboard_plan_without_open_tasks(user: User) -> None:
    await user.open('/')
    await user.should_see('No pending tasks to plan')
