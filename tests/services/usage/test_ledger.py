"""The ledger: idempotency, rollups that always equal the events, and exact period boundaries in any time zone.

Every test here runs against SQLite and, when SPENDGAUGE_TEST_DATABASE_URL is set, PostgreSQL."""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select

from services.core.context import BudgetContext
from services.core.periods import hour_floor
from services.core.tables import (
    AGENTS,
    DAILY,
    EVENTS,
    HOURLY,
    ROLLUPS,
    SCOPE_ROLLUPS,
    SESSION_AGENTS,
    SESSION_SCOPES,
    SESSIONS,
    TASK_SPEND,
)
from services.live.hub import EventHub
from services.live.topics import LiveEvent, UsageChanged
from services.spend import budget
from services.spend.rollups import totals_between
from services.usage.ledger import EventRejected, Ledger

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def event(**fields: object) -> dict:
    base = {'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 1000, 'output_tokens': 500, 'ts': T0}
    return {**base, **fields}


def test_a_repeated_event_id_is_counted_once(ledger: Ledger) -> None:
    first = ledger.record(event(event_id='call-1', agent_id='a', session_id='s'))
    again = ledger.record(event(event_id='call-1', agent_id='a', session_id='s', input_tokens=9999))
    assert first[0] == 'stored' and again[0] == 'duplicate'
    assert again[1]['id'] == first[1]['id'] and again[1]['input_tokens'] == 1000
    with ledger.engine.connect() as conn:
        assert conn.execute(select(EVENTS.c.id)).all() == [(first[1]['id'],)]
        assert conn.execute(select(ROLLUPS.c.requests, ROLLUPS.c.cost_micros)).all() == [(1, 7500)]
        assert conn.execute(select(SESSIONS.c.requests)).scalar_one() == 1


def test_the_same_event_id_from_another_source_is_another_event(ledger: Ledger) -> None:
    ledger.record(event(event_id='x', source='api'))
    assert ledger.record(event(event_id='x', source='sdk'))[0] == 'stored'


def test_a_batch_stores_valid_items_and_reports_each(ledger: Ledger, hub: EventHub) -> None:
    seen: list[LiveEvent] = []
    hub.subscribe(seen.append)
    results = ledger.record_batch([
        event(event_id='b1'), event(event_id='b1'), {'model': 'gpt-4o', 'input_tokens': -1},
        event(event_id='b2', cache_read_tokens=2000), event(event_id='b3', model='mystery-model'),
    ])
    assert [r.status for r in results] == ['stored', 'duplicate', 'rejected', 'rejected', 'stored']
    assert results[2].reason is not None and results[3].reason is not None
    assert 'input_tokens' in results[2].reason
    assert 'cache_read_tokens' in results[3].reason
    assert results[1].id == results[0].id
    assert results[4].cost_source == 'unpriced' and results[4].cost_micros == 0
    assert [(e.topic, e.count) for e in seen if isinstance(e, UsageChanged)] == [('usage', 2)]
    ledger.record_batch([event(event_id='b1')])
    assert len(seen) == 1, 'a batch of duplicates publishes nothing'


def test_single_record_rejects_bad_input_with_the_field_named(ledger: Ledger) -> None:
    with pytest.raises(EventRejected, match='model'):
        ledger.record({'input_tokens': 5})
    with pytest.raises(EventRejected, match='channel'):
        ledger.record(event(channel='carrier-pigeon'))


def test_provider_is_inferred_from_the_model(ledger: Ledger) -> None:
    _, row = ledger.record({'model': 'claude-sonnet-4-5', 'input_tokens': 100_000})
    assert (row['provider'], row['cost_micros']) == ('anthropic', 300_000)


def test_agent_keeps_its_latest_session_even_when_events_arrive_out_of_order(ledger: Ledger) -> None:
    ledger.record(event(agent_id='a', session_id='new', ts=T0 + timedelta(hours=1)))
    ledger.record(event(agent_id='a', session_id='old', ts=T0))
    with ledger.engine.connect() as conn:
        row = conn.execute(select(AGENTS)).one()
    assert row.last_session_id == 'new'
    assert (row.first_seen_at, row.last_request_at) == (T0, T0 + timedelta(hours=1))


def test_an_empty_or_oversized_batch(ledger: Ledger) -> None:
    assert ledger.record_batch([]) == []
    with pytest.raises(EventRejected, match='10000'):
        ledger.record_batch([event()] * 10_001)


# --- rollups equal the events, for any stream ---------------------------------------------------------------------

_events = st.lists(st.fixed_dictionaries({
    'event_id': st.sampled_from([f'e{i}' for i in range(40)]),
    'source': st.sampled_from(['api', 'sdk']),
    'ts': st.integers(0, 72 * 60).map(lambda m: T0 + timedelta(minutes=m)),
    'agent_id': st.sampled_from([None, 'planner', 'coder', 'critic']),
    'session_id': st.sampled_from([None, 's1', 's2']),
    'task_id': st.sampled_from([None, 't1', 't2']),
    'provider': st.sampled_from(['openai', 'anthropic']),
    'model': st.sampled_from(['gpt-4o', 'claude-sonnet-4-5', 'in-house-model']),
    'channel': st.sampled_from(['litellm', 'direct']),
    'input_tokens': st.integers(0, 50_000),
    'output_tokens': st.integers(0, 5000),
}), max_size=60)


def _wipe(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in (EVENTS, ROLLUPS, HOURLY, DAILY, SCOPE_ROLLUPS, SESSION_SCOPES, SESSIONS, SESSION_AGENTS, AGENTS,
                      TASK_SPEND):
            conn.execute(delete(table))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=_events, splits=st.lists(st.integers(1, 20), min_size=1, max_size=8))
def test_rollups_equal_the_sum_of_events(ledger: Ledger, stream: list[dict], splits: list[int]) -> None:
    _wipe(ledger.engine)
    position, index = 0, 0
    while position < len(stream):
        size = splits[index % len(splits)]
        ledger.record_batch(stream[position:position + size])
        position, index = position + size, index + 1

    with ledger.engine.connect() as conn:
        events = conn.execute(select(EVENTS)).all()
        assert len(events) == len({(e['source'], e['event_id']) for e in stream})

        expected: dict[tuple, Counter] = defaultdict(Counter)
        sessions: dict[str, Counter] = defaultdict(Counter)
        agents: dict[str, Counter] = defaultdict(Counter)
        tasks: dict[str, Counter] = defaultdict(Counter)
        for e in events:
            key = (hour_floor(e.ts), e.agent_id or '', e.provider, e.model, e.channel)
            expected[key].update(cost=e.cost_micros, requests=1, input=e.input_tokens,
                                 unpriced=int(e.cost_source == 'unpriced'))
            for group, name in ((sessions, e.session_id), (agents, e.agent_id), (tasks, e.task_id)):
                if name:
                    group[name].update(cost=e.cost_micros, requests=1, input=e.input_tokens)
        rollups = {(r.hour, r.agent_id, r.provider, r.model, r.channel):
                   Counter(cost=r.cost_micros, requests=r.requests, input=r.input_tokens, unpriced=r.unpriced_requests)
                   for r in conn.execute(select(ROLLUPS))}
        assert _positive(rollups) == _positive(expected)
        for table, group, id_column in ((SESSIONS, sessions, 'id'), (AGENTS, agents, 'id'),
                                        (TASK_SPEND, tasks, 'task_id')):
            stored = {getattr(r, id_column): Counter(cost=r.cost_micros, requests=r.requests, input=r.input_tokens)
                      for r in conn.execute(select(table))}
            assert _positive(stored) == _positive(group)
        total = totals_between(conn, [T0, T0 + timedelta(days=4)]).total(0)
        assert total.cost_micros == sum(e.cost_micros for e in events)
        assert total.requests == len(events)


def _positive(counters: dict) -> dict:
    return {k: +c for k, c in counters.items()}


# --- periods in a non-UTC time zone -------------------------------------------------------------------------------

def test_day_boundaries_follow_a_half_hour_time_zone(ledger: Ledger) -> None:
    """Kolkata is UTC+5:30: its midnight cuts a UTC hour in half, so both halves must land on the right day."""
    kolkata = ZoneInfo('Asia/Kolkata')
    midnight = datetime(2026, 3, 11, 0, 0, tzinfo=kolkata).astimezone(UTC)  # 18:30 UTC on the 10th
    ledger.record_batch([
        event(event_id='before', ts=midnight - timedelta(minutes=1), cost_usd='1.00'),
        event(event_id='after', ts=midnight + timedelta(minutes=1), cost_usd='2.00'),
        event(event_id='same-utc-hour-later', ts=midnight + timedelta(minutes=29), cost_usd='4.00'),
        event(event_id='next-hour', ts=midnight + timedelta(minutes=31), cost_usd='8.00'),
    ])
    with ledger.engine.connect() as conn:
        before = budget.period_summary(conn, BudgetContext(kolkata), 'day', now=midnight - timedelta(minutes=1))
        after = budget.period_summary(conn, BudgetContext(kolkata), 'day', now=midnight + timedelta(hours=3))
        history = budget.history(conn, BudgetContext(kolkata), 2, now=midnight + timedelta(hours=3))
    assert before['spent_micros'] == 1_000_000
    assert after['spent_micros'] == 14_000_000
    assert [p['cost_micros'] for p in history['points']] == [1_000_000, 14_000_000]
    assert [p['date'] for p in history['points']] == ['2026-03-10', '2026-03-11']


def test_week_starts_on_monday_and_month_on_the_first_in_local_time(ledger: Ledger) -> None:
    new_york = ZoneInfo('America/New_York')
    sunday_night = datetime(2026, 3, 8, 23, 30, tzinfo=new_york)  # DST starts that morning
    monday = datetime(2026, 3, 9, 0, 30, tzinfo=new_york)
    ledger.record_batch([event(event_id='sun', ts=sunday_night, cost_usd='1'),
                         event(event_id='mon', ts=monday, cost_usd='2'),
                         event(event_id='feb', ts=datetime(2026, 2, 28, 23, 0, tzinfo=new_york), cost_usd='4')])
    with ledger.engine.connect() as conn:
        week = budget.period_summary(conn, BudgetContext(new_york), 'week', now=monday)
        month = budget.period_summary(conn, BudgetContext(new_york), 'month', now=monday)
    assert week['spent_micros'] == 2_000_000
    assert week['start'] == '2026-03-09T04:00:00+00:00'  # local midnight, UTC-4 after the change
    assert month['spent_micros'] == 3_000_000


def test_history_is_zero_filled_and_ends_today(ledger: Ledger) -> None:
    now = T0 + timedelta(days=5)
    ledger.record(event(ts=T0, cost_usd='0.25'))
    with ledger.engine.connect() as conn:
        points = budget.history(conn, BudgetContext(ZoneInfo('UTC')), 30, now=now)['points']
    assert len(points) == 30 and points[-1]['date'] == now.date().isoformat()
    assert [p['cost_micros'] for p in points if p['cost_micros']] == [250_000]
    assert points[-6]['cost_micros'] == 250_000


def test_an_override_prices_events_stored_as_unpriced(ledger: Ledger) -> None:
    from services.usage.pricing import OverrideRates

    ledger.record_batch([
        event(event_id='u1', model='house-model', agent_id='a', session_id='s', task_id='t', input_tokens=2_000_000),
        event(event_id='u2', model='house-model', agent_id='a', session_id='s', ts=T0 + timedelta(hours=5),
              input_tokens=1_000_000, output_tokens=1_000_000),
        event(event_id='p1', agent_id='a', session_id='s'),  # gpt-4o: priced, 7,500 micros
    ])
    ledger.pricer.set_overrides({('openai', 'house-model'): OverrideRates(input=1_000_000, output=3_000_000)})
    assert ledger.reprice_unpriced('openai', 'house-model') == 2
    assert ledger.reprice_unpriced('openai', 'house-model') == 0
    expected = (2_000_000 + 500 * 3) + (1_000_000 + 3_000_000) + 7_500  # $1 input, $3 output per million
    with ledger.engine.connect() as conn:
        assert sorted(conn.execute(select(EVENTS.c.event_id, EVENTS.c.cost_source)).all()) == [
            ('p1', 'priced'), ('u1', 'priced'), ('u2', 'priced')]
        assert sum(conn.execute(select(ROLLUPS.c.unpriced_requests)).scalars()) == 0
        assert sum(conn.execute(select(ROLLUPS.c.requests)).scalars()) == 3
        for table in (ROLLUPS, DAILY, SESSIONS, AGENTS, SESSION_AGENTS):
            assert sum(conn.execute(select(table.c.cost_micros)).scalars()) == expected, table.name
        by_session = select(SCOPE_ROLLUPS.c.cost_micros).where(SCOPE_ROLLUPS.c.scope == 'session')
        by_provider = select(SESSION_SCOPES.c.cost_micros).where(SESSION_SCOPES.c.scope == 'provider')
        assert sum(conn.execute(by_session).scalars()) == sum(conn.execute(by_provider).scalars()) == expected
        assert conn.execute(select(SESSIONS.c.requests)).scalar_one() == 3
        assert conn.execute(select(TASK_SPEND.c.cost_micros)).scalar_one() == 2_001_500


def test_concurrent_batches_sharing_rollup_rows_neither_deadlock_nor_lose_counts(ledger: Ledger) -> None:
    """Batches touching the same rollup, session, agent and task rows in different orders, from several threads
    (on PostgreSQL this deadlocked before writes were made in key order)."""
    import random
    import threading

    errors: list[str] = []

    def writer(n: int) -> None:
        rng = random.Random(n)
        for b in range(10):
            batch = [event(event_id=f'{n}-{b}-{i}', agent_id=f'a{rng.randint(1, 4)}',
                           session_id=f's{rng.randint(1, 3)}', task_id=f't{rng.randint(1, 3)}', cost_usd='0.01')
                     for i in range(25)]
            rng.shuffle(batch)
            try:
                ledger.record_batch(batch)
            except Exception as exc:  # a deadlock surfaces as an OperationalError here
                errors.append(repr(exc)[:200])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with ledger.engine.connect() as conn:
        assert sum(conn.execute(select(ROLLUPS.c.requests)).scalars()) == 5 * 10 * 25
        assert sum(conn.execute(select(SESSIONS.c.cost_micros)).scalars()) == 5 * 10 * 25 * 10_000
