"""Every table the ledger derives from `usage_events`, recomputed from the events alone, to compare with what is
stored: after any correction the two must be equal, row for row and measure for measure."""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import Connection, Table, select

from services.core.periods import as_utc, hour_floor
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
from services.spend.day_zone import day_zone, local_day

TOKENS = ('input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_tokens')
SHORT = ('input_tokens', 'output_tokens', 'cost_micros', 'requests')  # what sessions, agents and tasks add up
KEYS: dict[str, tuple[str, ...]] = {
    ROLLUPS.name: ('hour', 'agent_id', 'provider', 'model', 'channel'), HOURLY.name: ('hour', 'channel'),
    DAILY.name: ('day', 'agent_id', 'provider', 'model', 'channel'), SCOPE_ROLLUPS.name: ('scope', 'hour', 'value'),
    SESSIONS.name: ('id',), SESSION_AGENTS.name: ('session_id', 'agent_id'),
    SESSION_SCOPES.name: ('session_id', 'scope', 'value'), AGENTS.name: ('id',), TASK_SPEND.name: ('task_id',)}
MEASURES: dict[str, tuple[str, ...]] = {
    ROLLUPS.name: (*TOKENS, 'cost_micros', 'requests', 'unpriced_requests'),
    HOURLY.name: (*TOKENS, 'cost_micros', 'requests'), DAILY.name: (*TOKENS, 'cost_micros', 'requests'),
    SCOPE_ROLLUPS.name: (*TOKENS, 'cost_micros', 'requests'), SESSIONS.name: SHORT, SESSION_AGENTS.name: SHORT,
    SESSION_SCOPES.name: SHORT, AGENTS.name: SHORT, TASK_SPEND.name: SHORT}
TABLES = (ROLLUPS, HOURLY, DAILY, SCOPE_ROLLUPS, SESSIONS, SESSION_AGENTS, SESSION_SCOPES, AGENTS, TASK_SPEND)


def recomputed(conn: Connection) -> dict[str, dict[tuple, Counter]]:
    """Each derived table as the events add up to it: table name -> key -> measures."""
    zone = day_zone(conn)
    tables: dict[str, dict[tuple, Counter]] = {table.name: defaultdict(Counter) for table in TABLES}
    for e in conn.execute(select(EVENTS)).mappings():
        ts = as_utc(e['ts'])
        hour, agent, tags = hour_floor(ts), e['agent_id'] or '', list(dict.fromkeys(e['tags'] or ()))
        full = Counter({**{t: e[t] for t in TOKENS}, 'cost_micros': e['cost_micros'], 'requests': 1})
        short = Counter({k: full[k] for k in SHORT})

        def add(table: Table, key: tuple, measures: Counter) -> None:
            tables[table.name][key].update(measures)

        add(ROLLUPS, (hour, agent, e['provider'], e['model'], e['channel']),
            full + Counter(unpriced_requests=int(e['cost_source'] == 'unpriced')))
        add(HOURLY, (hour, e['channel']), full)
        add(DAILY, (local_day(ts, zone), agent, e['provider'], e['model'], e['channel']), full)
        for scope, value in (('user', e['user_id']), ('project', e['project']), ('session', e['session_id']),
                             *(('tag', tag) for tag in tags)):
            if value:
                add(SCOPE_ROLLUPS, (scope, hour, value), full)
        if e['session_id']:
            add(SESSIONS, (e['session_id'],), short)
            if e['agent_id']:
                add(SESSION_AGENTS, (e['session_id'], e['agent_id']), short)
            for scope, value in (('user', e['user_id']), ('project', e['project']), ('provider', e['provider']),
                                 ('model', e['model']), *(('tag', tag) for tag in tags)):
                if value:
                    add(SESSION_SCOPES, (e['session_id'], scope, value), short)
        if e['agent_id']:
            add(AGENTS, (e['agent_id'],), short)
        if e['task_id']:
            add(TASK_SPEND, (e['task_id'],), short)
    return {name: {key: _nonzero(measures) for key, measures in rows.items()} for name, rows in tables.items()}


def stored(conn: Connection) -> dict[str, dict[tuple, Counter]]:
    """Each derived table as stored, in the shape of `recomputed`."""
    tables: dict[str, dict[tuple, Counter]] = {}
    for table in TABLES:
        rows = {}
        for row in conn.execute(select(table)).mappings():
            key = tuple(_plain(row[k]) for k in KEYS[table.name])
            rows[key] = _nonzero(Counter({m: row[m] for m in MEASURES[table.name]}))
        tables[table.name] = rows
    return tables


def assert_exact(conn: Connection) -> int:
    """Every derived table equals the events' sums; how many rows were compared."""
    expected, actual = recomputed(conn), stored(conn)
    for name in expected:
        assert actual[name] == expected[name], f'{name} differs from the events: ' + _difference(
            actual[name], expected[name])
    return sum(len(rows) for rows in expected.values())


def _nonzero(measures: Counter) -> Counter:
    """The measures that are not 0 (a negative one stays: it is a defect to show)."""
    return Counter({name: value for name, value in measures.items() if value})


def _plain(value: Any) -> Any:
    return as_utc(value) if hasattr(value, 'tzinfo') and hasattr(value, 'hour') else value


def _difference(actual: dict[tuple, Counter], expected: dict[tuple, Counter]) -> str:
    keys = sorted((k for k in actual.keys() | expected.keys() if actual.get(k) != expected.get(k)), key=str)
    return '; '.join(f'{k}: stored {actual.get(k)}, events {expected.get(k)}' for k in keys[:5])
