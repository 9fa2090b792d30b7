"""The usage listing as a keyset: every event once and in order across pages, even when many share a timestamp, and a
page after a cursor is one index range (no scan, no sort), with or without an agent, session or task filter.

Every test here runs against SQLite and, when SPENDGAUGE_TEST_DATABASE_URL is set, PostgreSQL."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, select, text

from services.core.errors import Invalid
from services.core.tables import EVENTS
from services.usage.ledger import Ledger
from services.usage.queries import UsageQuery, encode_cursor, list_usage, usage_query

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
FILTERS = [{}, {'agent_id': 'agent-1'}, {'session_id': 'session-2'}, {'task_id': 'task-0'}]
INDEXES = {'': 'ix_usage_events_ts_id_cost', 'agent_id': 'ix_usage_events_agent_ts_id',
           'session_id': 'ix_usage_events_session_ts_id', 'task_id': 'ix_usage_events_task_ts_id'}


def _record(ledger: Ledger, count: int) -> None:
    """`count` events on only seven distinct timestamps, spread over three agents, sessions and tasks, recorded
    out of time order (so ids and times do not agree)."""
    events = [{'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 10, 'output_tokens': 5,
               'ts': T0 - timedelta(seconds=(i * 5) % 7), 'agent_id': f'agent-{i % 3}',
               'session_id': f'session-{i % 4 % 3}', 'task_id': f'task-{i % 5 % 3}', 'event_id': f'e-{i}'}
              for i in range(count)]
    for start in range(0, count, 40):
        assert all(r.status == 'stored' for r in ledger.record_batch(events[start:start + 40]))


@pytest.mark.parametrize('filters', FILTERS, ids=lambda f: next(iter(f), 'none'))
def test_pages_give_every_event_once_in_order_with_equal_timestamps(ledger: Ledger, filters: dict[str, str]) -> None:
    _record(ledger, 200)
    with ledger.engine.connect() as conn:
        query = select(EVENTS.c.id, EVENTS.c.ts).order_by(EVENTS.c.ts.desc(), EVENTS.c.id.desc())
        for name, value in filters.items():
            query = query.where(EVENTS.c[name] == value)
        expected = [row.id for row in conn.execute(query)]
        seen: list[int] = []
        cursor = None
        for _ in range(100):
            page = list_usage(conn, UsageQuery(limit=7, cursor=cursor, **filters))  # type: ignore[arg-type]
            seen += [item['id'] for item in page['items']]
            cursor = page['next_cursor']
            if cursor is None:
                break
    assert len(expected) > 7 * 3
    assert seen == expected  # each once, newest first, ties by id


@contextmanager
def explained(engine: Engine) -> Iterator[None]:
    """Every statement run on `engine` in the block is EXPLAINed instead (with its real parameters)."""
    prefix = 'EXPLAIN QUERY PLAN ' if engine.dialect.name == 'sqlite' else 'EXPLAIN '

    def explain(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> tuple[str, Any]:
        return prefix + statement, parameters
    event.listen(engine, 'before_cursor_execute', explain, retval=True)
    try:
        yield
    finally:
        event.remove(engine, 'before_cursor_execute', explain)


def _plan(engine: Engine, conn: Connection, q: UsageQuery) -> str:
    query = usage_query(q)
    # the row value itself (SQLite's plan reads the same for `ts < :ts OR (ts = :ts AND id < :id)`, which took 1.7 s
    # for a deep page of 1.8M events against 2 ms)
    assert '(usage_events.ts, usage_events.id) < (' in str(query.compile(dialect=engine.dialect))
    with explained(engine):
        rows = conn.execute(query).all()
    return '\n'.join(str(row[-1]) for row in rows)


@pytest.mark.parametrize('filters', FILTERS, ids=lambda f: next(iter(f), 'none'))
def test_a_page_after_a_cursor_is_one_index_range(ledger: Ledger, filters: dict[str, str]) -> None:
    _record(ledger, 200)
    engine = ledger.engine
    index = INDEXES[next(iter(filters), '')]
    with engine.connect() as conn:
        if engine.dialect.name == 'postgresql':
            # a table this small is cheaper to scan; the question is whether the index CAN serve the page alone
            for setting in ('enable_seqscan', 'enable_bitmapscan', 'enable_sort'):
                conn.execute(text(f'SET LOCAL {setting} = off'))
        cursor = encode_cursor(T0 - timedelta(seconds=3), 10**6)
        plan = _plan(engine, conn, UsageQuery(limit=50, cursor=cursor, **filters))  # type: ignore[arg-type]
    if engine.dialect.name == 'sqlite':
        # 'SEARCH usage_events USING INDEX ix_usage_events_task_ts_id (task_id=? AND ts<?)': a range of the index,
        # read backwards. SQLite bounds it by ts alone because id is the rowid, which it does not take as the second
        # column of a row-value range: the seek lands on the cursor's timestamp and the few rows sharing it are
        # stepped over (the paging test above shows none is lost).
        assert f'SEARCH usage_events USING INDEX {index} (' in plan, plan
        assert 'ts<?)' in plan, plan
        assert 'SCAN' not in plan and 'TEMP B-TREE' not in plan, plan
    else:
        # 'Index Scan Backward using ix_usage_events_task_ts_id ... Index Cond: ((task_id = ...) AND (ROW(ts, id) <
        # ROW(...)))': the row value bounds the range (an Index Cond, not a Filter)
        assert f'Index Scan Backward using {index} on usage_events' in plan, plan
        assert 'Index Cond:' in plan and 'ROW(ts, id) < ROW(' in plan.split('Index Cond:', 1)[1], plan
        assert 'Sort' not in plan and 'Seq Scan' not in plan, plan


def _record_costs(ledger: Ledger, count: int) -> None:
    """`count` reported calls costing one of thirteen amounts (many share one), at three agents, over seven times."""
    events = [{'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': f'0.{(i * 7) % 13:02d}',
               'ts': T0 - timedelta(minutes=(i * 5) % 7), 'agent_id': f'agent-{i % 3}', 'event_id': f'c-{i}',
               'tags': ['even'] if i % 2 == 0 else []} for i in range(count)]
    assert all(r.status == 'stored' for r in ledger.record_batch(events))


@pytest.mark.parametrize('filters', [{}, {'agent_id': 'agent-1'}, {'tag': 'even', 'provider': 'OpenAI'},
                                     {'start': T0 - timedelta(minutes=4), 'end': T0 - timedelta(minutes=1)}],
                         ids=['none', 'agent', 'tag-provider', 'range'])
def test_sorted_by_cost_pages_give_every_event_once_dearest_first(ledger: Ledger, filters: dict[str, Any]) -> None:
    _record_costs(ledger, 150)
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(EVENTS.c.id, EVENTS.c.cost_micros, EVENTS.c.ts, EVENTS.c.agent_id,
                                   EVENTS.c.tags)).all()
        wanted = [r for r in rows
                  if r.agent_id == filters.get('agent_id', r.agent_id)
                  and ('tag' not in filters or 'even' in r.tags)
                  and ('start' not in filters or filters['start'] <= r.ts.replace(tzinfo=UTC) < filters['end'])]
        expected = [r.id for r in sorted(wanted, key=lambda r: (r.cost_micros, r.id), reverse=True)]
        seen: list[int] = []
        cursor = None
        for _ in range(100):
            page = list_usage(conn, UsageQuery(limit=9, cursor=cursor, sort='cost', **filters))
            assert page['searched_to'] is None
            seen += [item['id'] for item in page['items']]
            cursor = page['next_cursor']
            if cursor is None:
                break
    assert len(expected) > 9 * 3
    assert seen == expected  # each once, dearest first, ties by id


def test_a_cursor_pages_only_the_order_it_came_from(ledger: Ledger) -> None:
    _record_costs(ledger, 20)
    with ledger.engine.connect() as conn:
        by_cost = list_usage(conn, UsageQuery(limit=5, sort='cost'))['next_cursor']
        by_time = list_usage(conn, UsageQuery(limit=5))['next_cursor']
        assert by_cost and by_time
        with pytest.raises(Invalid, match='cursor: it pages the listing sorted by cost, not by time'):
            list_usage(conn, UsageQuery(limit=5, cursor=by_cost))
        with pytest.raises(Invalid, match='cursor: it pages the listing sorted by time, not by cost'):
            list_usage(conn, UsageQuery(limit=5, cursor=by_time, sort='cost'))
        with pytest.raises(Invalid, match='sort: must be one of time, cost'):
            list_usage(conn, UsageQuery(sort='price'))


def test_by_cost_the_window_is_read_from_the_time_index_alone(ledger: Ledger) -> None:
    """The newest events ranked by cost come from the (ts, id, cost_micros) index alone (no table lookup per event);
    only the page's rows are read from the table."""
    _record_costs(ledger, 50)
    engine = ledger.engine
    with engine.connect() as conn:
        first = list_usage(conn, UsageQuery(limit=5, sort='cost'))
        if engine.dialect.name == 'postgresql':
            for setting in ('enable_seqscan', 'enable_bitmapscan'):
                conn.execute(text(f'SET LOCAL {setting} = off'))
        query = usage_query(UsageQuery(limit=5, cursor=first['next_cursor'], sort='cost'))
        with explained(engine):
            plan = '\n'.join(str(row[-1]) for row in conn.execute(query).all())
    if engine.dialect.name == 'sqlite':
        assert 'USING COVERING INDEX ix_usage_events_ts_id_cost' in plan, plan
    else:
        assert 'Index Only Scan Backward using ix_usage_events_ts_id_cost on usage_events' in plan, plan
