"""Budget checks: the ladder through the counters, counters that follow the ledger exactly (also under concurrent
writers and after a restart), alerts, and `POST /check` end to end against a real server. The pure rules are tested
in test_rules.py."""
from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine

from services.alerting import alerts
from services.budget import eco, policies
from services.budget.checker import Checker, CheckRequest
from services.budget.policies import PolicyRule
from services.core.access import SYSTEM
from services.live.hub import EventHub
from services.live.topics import AlertRaised, EcoChanged, LiveEvent, SyncFinished
from services.sources.base import PullResult, SnapshotRow
from services.sources.snapshots import store_snapshots
from services.spend.rollups import totals_between
from services.usage.ledger import Ledger
from tests.support.api import assert_client_error, check, record, uid
from tests.support.ledger import spend
from tests.support.wait import eventually

ZONE = ZoneInfo('Europe/Berlin')


def add(engine: Engine, **fields: Any) -> PolicyRule:
    with engine.begin() as conn:
        return policies.create_policy(conn, policies.validate({'name': uid('policy'), **fields}))


# --- the ladder -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(('action', 'spent', 'decision'), [
    ('block', 100_000, 'allow'), ('block', 850_000, 'warn'), ('block', 960_000, 'throttle'),
    ('block', 1_000_000, 'block'), ('throttle', 1_000_000, 'throttle'), ('throttle', 960_000, 'throttle'),
    ('warn', 1_000_000, 'warn'), ('warn', 960_000, 'warn'), ('ignore', 2_000_000, 'allow'),
    ('ignore', 850_000, 'allow'),
])
def test_action_caps_the_ladder(sqlite_engine: Engine, action: str, spent: int, decision: str) -> None:
    hub = EventHub()
    ledger = Ledger(sqlite_engine, _pricer(), hub)
    add(sqlite_engine, limit_usd='1', action=action)
    checker = Checker(sqlite_engine, hub, ZONE)
    checker.start()
    spend(ledger, str(spent / 1_000_000))
    result = checker.check(CheckRequest())
    assert result['decision'] == decision
    assert result['policies'][0]['spent_micros'] == spent
    assert ('retry_after_s' in result) == (decision == 'throttle')
    if decision == 'throttle':
        assert 1 <= result['retry_after_s'] <= 900


def _pricer() -> Any:
    from services.usage.pricing import Pricer

    return Pricer()


def test_scopes_match_only_their_calls(ledger: Ledger, engine: Engine) -> None:
    agent = add(engine, scope='agent', scope_value='a1', limit_usd='1', action='block')
    per_agent = add(engine, scope='agent', limit_usd='1', action='block')
    tag = add(engine, scope='tag', scope_value='nightly', limit_usd='1', action='block')
    project = add(engine, scope='project', scope_value='p1', limit_usd='1', action='block', period='month')
    model = add(engine, scope='model', scope_value='gpt-4o', limit_usd='10', action='block')
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    spend(ledger, '0.4', agent_id='a1', tags=['nightly', 'x'], project='p1')
    spend(ledger, '0.7', agent_id='a2', project='p1')
    assert checker.spent(agent.id, 'a1') == 400_000
    assert (checker.spent(per_agent.id, 'a1'), checker.spent(per_agent.id, 'a2')) == (400_000, 700_000)
    assert checker.spent(tag.id, 'nightly') == 400_000
    assert checker.spent(project.id, 'p1') == 1_100_000
    assert checker.spent(model.id, 'gpt-4o') == 1_100_000
    assert checker.check(CheckRequest(agent_id='a3'))['decision'] == 'allow'
    assert checker.check(CheckRequest(project='p1'))['decision'] == 'block'
    result = checker.check(CheckRequest(agent_id='a2', estimated_cost_micros=400_000))
    assert result['decision'] == 'block'  # 0.7 + 0.4 would cross the per-agent $1
    assert any('per' not in r and 'limit' in r for r in result['reasons'])


def test_paused_agent_is_blocked(ledger: Ledger, engine: Engine) -> None:
    spend(ledger, '0.01', agent_id='a1')
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    with engine.begin() as conn:
        assert policies.set_agent_paused(conn, 'a1', True)
        assert not policies.set_agent_paused(conn, 'nobody', True)
    checker.rebuild()
    result = checker.check(CheckRequest(agent_id='a1'))
    assert (result['decision'], result['reasons'][0]) == ('block', 'agent a1 is paused')
    checker.set_paused('a1', False)
    assert checker.check(CheckRequest(agent_id='a1'))['decision'] == 'allow'


# --- periods in a non-UTC zone ----------------------------------------------------------------------------------

@pytest.mark.parametrize(('period', 'inside', 'outside'), [
    # Berlin midnight is 23:00 UTC in winter
    ('day', datetime(2026, 11, 29, 23, 30, tzinfo=UTC), datetime(2026, 11, 29, 22, 59, tzinfo=UTC)),
    # the week starts on Monday 2026-11-30 local = Sunday 23:00 UTC
    ('week', datetime(2026, 11, 29, 23, 0, tzinfo=UTC), datetime(2026, 11, 29, 22, 59, 59, tzinfo=UTC)),
    # month end: 2026-12-01 00:00 local = 2026-11-30 23:00 UTC
    ('month', datetime(2026, 11, 30, 23, 0, tzinfo=UTC), datetime(2026, 11, 30, 22, 30, tzinfo=UTC)),
    # DST ends 2026-10-25 03:00 CEST: that day has 25 hours, and the next one starts at 23:00 UTC, not 22:00
    ('day', datetime(2026, 10, 25, 22, 30, tzinfo=UTC), datetime(2026, 10, 24, 21, 59, tzinfo=UTC)),
    # DST starts 2026-03-29: the day starts 23:00 UTC the evening before and lasts 23 hours
    ('day', datetime(2026, 3, 29, 21, 59, tzinfo=UTC), datetime(2026, 3, 28, 22, 59, tzinfo=UTC)),
])
def test_period_boundaries(ledger: Ledger, engine: Engine, period: str, inside: datetime,
                           outside: datetime) -> None:
    policy = add(engine, limit_usd='1', period=period, action='block')
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start(now=inside)  # the checker's current period is the one `inside` falls in, whatever today is
    spend(ledger, '0.30', ts=inside.isoformat())
    spend(ledger, '0.50', ts=outside.isoformat())
    now = inside
    live = checker.check(CheckRequest(), now=now)['policies'][0]
    assert live['spent_micros'] == 300_000
    rebuilt = Checker(engine, EventHub(), ZONE)
    rebuilt.rebuild(now=now)
    assert rebuilt.check(CheckRequest(), now=now)['policies'][0]['spent_micros'] == 300_000
    assert checker.spent(policy.id) == 300_000  # an event of a past period is not counted


def test_custom_range_and_session_period(ledger: Ledger, engine: Engine) -> None:
    custom = add(engine, limit_usd='1', period='custom', period_start='2026-03-01', period_end='2026-03-31')
    session = add(engine, limit_usd='1', period='session', scope='agent', action='block')
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    spend(ledger, '0.2', ts='2026-03-31T21:59:00+00:00', agent_id='a', session_id='s1')  # 23:59 CEST
    spend(ledger, '0.4', ts='2026-03-31T22:00:00+00:00', agent_id='a', session_id='s1')  # April 1st local
    spend(ledger, '0.5', ts='2026-02-28T22:59:00+00:00', agent_id='a', session_id='s2')  # Feb 28th 23:59 CET
    assert checker.spent(custom.id) == 200_000
    assert checker.spent(session.id, 'a', 's1') == 600_000
    in_march = datetime(2026, 3, 15, tzinfo=UTC)
    result = checker.check(CheckRequest(agent_id='a', session_id='s1', estimated_cost_micros=500_000), now=in_march)
    assert result['decision'] == 'block'
    assert {p['id'] for p in result['policies']} == {custom.id, session.id}
    # a day after s1's last event: s2 (a month older) has left memory, on a recount as after pruning
    next_day = datetime(2026, 4, 1, 12, tzinfo=UTC)
    rebuilt = Checker(engine, EventHub(), ZONE)
    rebuilt.rebuild(now=next_day)
    assert checker.prune_sessions(next_day) == 1
    assert rebuilt.counters.snapshot() == checker.counters.snapshot() == {(custom.id, '', 'custom'): 200_000,
                                                        (session.id, 'a', 's1'): 600_000}


# --- exact counters -----------------------------------------------------------------------------------------------

def test_counters_exact_under_concurrent_writers(ledger: Ledger, engine: Engine) -> None:
    day = add(engine, limit_usd='1000', action='block')
    per_agent = add(engine, scope='agent', limit_usd='1000', action='block')
    tag = add(engine, scope='tag', limit_usd='1000', action='block', period='week')
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(n: int) -> None:
        try:
            for i in range(25):
                # one event per call: batches that touch the same rollup rows in a different order can
                # deadlock each other on PostgreSQL (a ledger issue, reported)
                for j in range(4):
                    ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'agent_id': f'agent-{(n + i + j) % 4}',
                                   'tags': [f't{j % 3}'], 'cost_usd': f'0.00{(i * 7 + j) % 10}{n}'})
        except BaseException as exc:
            errors.append(exc)

    def check() -> None:
        while not stop.is_set():
            checker.check(CheckRequest(agent_id='agent-1', tags=('t1',), estimated_cost_micros=10))

    checking = [threading.Thread(target=check) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in checking + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in checking:
        thread.join()
    assert not errors
    now = datetime.now(UTC)
    with engine.connect() as conn:
        span = checker.counters.span('day', now)
        by_agent = totals_between(conn, [span.start, span.end], ('agent_id',)).groups[0]
    assert checker.spent(day.id) == sum(t.cost_micros for t in by_agent.values())
    for (agent,), totals in by_agent.items():
        assert checker.spent(per_agent.id, agent) == totals.cost_micros
    rebuilt = Checker(engine, EventHub(), ZONE)
    rebuilt.rebuild()
    assert rebuilt.counters.snapshot() == checker.counters.snapshot()
    assert sum(checker.spent(tag.id, f't{k}') for k in range(3)) == checker.spent(day.id)


def test_corrections_rebuild_the_counters(ledger: Ledger, engine: Engine) -> None:
    policy = add(engine, limit_usd='5')
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    spend(ledger, '1', agent_id='keep')
    spend(ledger, '2', agent_id='drop')
    from services.usage.ledger import EVENTS

    ledger.remove_events(EVENTS.c.agent_id == 'drop')
    assert checker.spent(policy.id) == 1_000_000


def test_policy_change_is_seen_after_rebuild(ledger: Ledger, engine: Engine) -> None:
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    spend(ledger, '0.5')
    assert checker.check(CheckRequest())['policies'] == []
    add(engine, limit_usd='0.5', action='block')
    checker.rebuild()
    assert checker.check(CheckRequest())['decision'] == 'block'


# --- alerts and eco ---------------------------------------------------------------------------------------------

def test_crossing_thresholds_raises_alerts_once(ledger: Ledger, engine: Engine) -> None:
    policy = add(engine, limit_usd='1', action='block', auto_eco=True)
    events: list[LiveEvent] = []
    ledger.hub.subscribe(events.append)
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    spend(ledger, '0.5')
    spend(ledger, '0.35')  # 85%: soft
    spend(ledger, '0.01')
    spend(ledger, '0.12')  # 98%: critical
    spend(ledger, '0.5')  # over
    blocked = checker.check(CheckRequest())
    assert blocked['decision'] == 'block' and blocked['eco_mode'] is True
    checker.check(CheckRequest())
    with engine.connect() as conn:
        raised = {a['type']: a for a in alerts.list_alerts(conn)}
        assert eco.get_eco(conn)['eco_mode'] is True
    assert set(raised) == {'threshold_warning', 'threshold_critical', 'limit_exceeded', 'policy_violation'}
    assert all(a['count'] == 1 and a['data']['policy_id'] == policy.id for a in raised.values())
    assert raised['limit_exceeded']['severity'] == 'critical' and raised['threshold_warning']['severity'] == 'warning'
    published = [e.alert['type'] for e in events if isinstance(e, AlertRaised)]
    assert sorted(published) == sorted(raised)
    eco_events = [e for e in events if isinstance(e, EcoChanged)]
    assert len(eco_events) == 1 and eco_events[0].spent_micros == 850_000


# --- the API ------------------------------------------------------------------------------------------------------

def make_policy(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post('/policies', json={'name': uid('policy'), **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_check_api_blocks_a_call_that_would_cross_the_limit(api: httpx.Client) -> None:
    agent = uid('agent')
    policy = make_policy(api, scope='agent', scope_value=agent, limit_usd='1.00', action='block')
    record(api, agent_id=agent, cost_usd='0.70')
    ok = check(api, agent_id=agent, estimated_cost_usd='0.05')
    assert (ok['decision'], ok['policies'][0]['spent_usd'], ok['policies'][0]['remaining_usd']) == \
        ('allow', '0.700000', '0.300000')
    warn = check(api, agent_id=agent, estimated_cost_usd='0.15')
    assert warn['decision'] == 'warn'
    throttled = check(api, agent_id=agent, estimated_cost_usd='0.27')
    assert throttled['decision'] == 'throttle' and throttled['retry_after_s'] >= 1
    blocked = check(api, agent_id=agent, estimated_cost_usd='0.31')
    assert blocked['decision'] == 'block' and blocked['allowed'] is False
    assert 'limit' in blocked['reasons'][0]
    priced = check(api, agent_id=agent, model='gpt-4o', provider='openai', estimated_input_tokens=1_000_000,
                   estimated_output_tokens=0)
    assert priced['estimated_cost_micros'] > 300_000 and priced['decision'] == 'block'
    assert check(api, agent_id=uid('other'), estimated_cost_usd='0.31')['policies'] == []
    listed = api.get(f'/policies/{policy["id"]}').json()
    assert (listed['spent_micros'], listed['current']) == (700_000, [
        {'scope_value': agent, 'spent_micros': 700_000, 'spent_usd': '0.700000'}])


def test_check_api_paused_agent(api: httpx.Client) -> None:
    agent = uid('agent')
    record(api, agent_id=agent, cost_usd='0.01')
    assert api.post(f'/agents/{agent}/pause').json() == {'agent_id': agent, 'paused': True}
    blocked = check(api, agent_id=agent)
    assert blocked['decision'] == 'block' and 'paused' in blocked['reasons'][0]
    assert any(a['id'] == agent and a['paused'] for a in api.get('/agents').json()['items'])
    assert api.post(f'/agents/{agent}/resume').status_code == 200
    assert check(api, agent_id=agent)['decision'] == 'allow'
    assert_client_error(api.post(f'/agents/{uid("ghost")}/pause'), 404, mentions='agent_id')


@pytest.mark.parametrize(('body', 'field'), [
    ({'estimated_cost_usd': '-1'}, 'estimated_cost_usd'),
    ({'estimated_cost_usd': 'lots'}, 'estimated_cost_usd'),
    ({'estimated_input_tokens': 10}, 'model'),
    ({'estimated_input_tokens': 10, 'model': 'gpt-4o', 'estimated_cost_usd': '1'}, 'estimated_cost_usd'),
    ({'estimated_output_tokens': -1, 'model': 'gpt-4o'}, 'estimated_output_tokens'),
    ({'tags': 'x'}, 'tags'),
    ({'agent': 'x'}, 'agent'),
])
def test_check_api_rejects_bad_input(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    assert_client_error(api.post('/check', json=body), 422, mentions=field)


def test_counters_rebuilt_after_restart_equal_live(tmp_path: Any) -> None:
    from tests.support.servers import start_server

    server = start_server(tmp_path, SPENDGAUGE_TZ='Europe/Berlin', SPENDGAUGE_DAILY_LIMIT_USD='none')
    try:
        with server.client() as api:
            make_policy(api, scope='project', limit_usd='10', action='block')
            make_policy(api, limit_usd='10', period='week', action='block')
            for i in range(5):
                record(api, project=f'p{i % 2}', cost_usd=f'0.{i + 1}', agent_id='a', session_id=f's{i % 2}')
            live = [check(api, project=f'p{i}')['policies'] for i in range(2)]
    finally:
        server.stop()
    server = start_server(tmp_path, database_url=server.database_url, SPENDGAUGE_TZ='Europe/Berlin',
                          SPENDGAUGE_DAILY_LIMIT_USD='none')
    try:
        with server.client() as api:
            assert [check(api, project=f'p{i}')['policies'] for i in range(2)] == live
    finally:
        server.stop()
    assert live[0][0]['spent_micros'] == 900_000 and live[1][1]['spent_micros'] == 1_500_000


# --- recounts, billed spend, ended sessions ---------------------------------------------------------------------

def test_recounts_during_concurrent_writes_count_every_event_once(ledger: Ledger, engine: Engine) -> None:
    """The ledger's writes and a recount exclude each other (the hub's gate), so a recount in the middle of a stream
    of writes neither loses an event nor counts one twice."""
    policy = add(engine, limit_usd='1000', period='day', action='block')
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    writers, per_writer = 4, 40
    stop = threading.Event()

    def write(n: int) -> None:
        for i in range(per_writer):
            ledger.record_batch([{'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.001001',
                                  'event_id': f'race-{n}-{i}-{j}'} for j in range(3)])

    def recount() -> None:
        while not stop.is_set():
            checker.rebuild()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    recounter = threading.Thread(target=recount)
    recounter.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    recounter.join()
    assert checker.spent(policy.id) == writers * per_writer * 3 * 1001


def test_global_and_provider_policies_count_the_bill_when_it_is_higher(ledger: Ledger, engine: Engine) -> None:
    now = datetime.now(UTC)
    today = now.astimezone(ZONE).date()
    overall = add(engine, limit_usd='4', period='day', action='block')
    openai = add(engine, scope='provider', scope_value='openai', limit_usd='10', period='day', action='block')
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    spend(ledger, '1.00')  # recorded: $1 direct to OpenAI
    assert checker.check(CheckRequest(provider='openai'))['decision'] == 'allow'
    with engine.begin() as conn:  # the bill says $5: $4 went to OpenAI without passing SpendGauge
        bill = SnapshotRow('openai_direct', today, 'openai', '', 5_000_000)
        store_snapshots(conn, 'openai_direct', PullResult([bill], {today}))
    ledger.hub.publish(SyncFinished('openai_direct', 'ok'))
    deadline = datetime.now(UTC).timestamp() + 5
    while checker.check(CheckRequest(provider='openai'))['decision'] != 'block':
        assert datetime.now(UTC).timestamp() < deadline, 'the bill was not counted'
    result = checker.check(CheckRequest(provider='openai'))
    spent = {p['id']: p['spent_micros'] for p in result['policies']}
    assert spent == {overall.id: 5_000_000, openai.id: 5_000_000}
    assert checker.current_spend(overall.id) == {'': 5_000_000}
    def raised() -> set[tuple[str, int, int]]:
        with engine.connect() as conn:
            return {(a['type'], a['data']['policy_id'], a['data']['spent_micros'])
                    for a in alerts.list_alerts(conn, 'open')}

    # the bill crossed the overall limit: alerted as if the calls were recorded (by the refreshing thread)
    eventually(lambda: raised() == {('limit_exceeded', overall.id, 5_000_000),
                                    ('policy_violation', overall.id, 5_000_000)})
    spend(ledger, '6.00')  # recorded spend overtakes the bill: it counts again
    assert checker.check(CheckRequest(provider='openai'))['policies'][1]['spent_micros'] == 7_000_000
    with engine.connect() as conn:
        assert len(alerts.list_alerts(conn, 'open')) == 2, 'crossed once, alerted once'


def test_an_ended_session_is_forgotten(ledger: Ledger, engine: Engine) -> None:
    policy = add(engine, scope='agent', limit_usd='1', period='session', action='block')
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    spend(ledger, '0.40', agent_id='a', session_id='s-old')
    spend(ledger, '0.10', agent_id='a', session_id='s-new')
    assert checker.spent(policy.id, 'a', 's-old') == 400_000
    checker.commands.sessions.end(SYSTEM, 's-old')
    assert checker.spent(policy.id, 'a', 's-old') == 0 and checker.spent(policy.id, 'a', 's-new') == 100_000


def test_idle_sessions_leave_memory_and_come_back_with_their_spend(ledger: Ledger, engine: Engine) -> None:
    from datetime import timedelta

    from services.budget.counters import SESSION_IDLE

    policy = add(engine, scope='agent', limit_usd='1', period='session', action='block')
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    recounts = checker.recounts
    spend(ledger, '0.30', agent_id='a', session_id='s-idle')
    spend(ledger, '0.20', agent_id='a', session_id='s-busy')  # each write checks its new sessions when it is through
    assert checker.recounts == recounts, 'new sessions need no recount'
    assert checker.prune_sessions(datetime.now(UTC) + SESSION_IDLE + timedelta(minutes=1)) == 2
    assert checker.counters.snapshot() == {}

    spend(ledger, '0.60', agent_id='a', session_id='s-idle')  # it comes back: $0.90 in all, not $0.60
    assert checker.spent(policy.id, 'a', 's-idle') == 900_000
    assert checker.recounts == recounts + 1
    assert checker.check(CheckRequest(agent_id='a', session_id='s-idle', estimated_cost_micros=200_000))[
        'decision'] == 'block'
    # a recount leaves out the sessions idle for longer than SESSION_IDLE
    later = datetime.now(UTC) + SESSION_IDLE + timedelta(hours=1)
    checker.rebuild(now=later)
    assert checker.counters.snapshot() == {}


def test_events_of_ended_or_long_past_sessions_cause_no_recounts(ledger: Ledger, engine: Engine) -> None:
    add(engine, scope='agent', limit_usd='1', period='session', action='block')
    checker = Checker(engine, ledger.hub, ZONE)
    checker.start()
    recounts = checker.recounts
    for n in range(3):  # a backfill of an old session, and events after a session ended
        spend(ledger, '0.10', agent_id='a', session_id='s-2025', ts=f'2025-01-0{n + 1}T10:00:00+00:00')
        spend(ledger, '0.10', agent_id='a', session_id='s-ended')
        if n == 0:
            checker.commands.sessions.end(SYSTEM, 's-ended')
    assert checker.recounts == recounts
