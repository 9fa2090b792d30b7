"""Sessions: the last N with their totals, one with its per-agent breakdown, ending one, CSV export."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update
from typing_extensions import TypedDict

from services.core.db import chunked
from services.core.errors import NotFound
from services.core.export import csv_text
from services.core.money import micros_to_usd
from services.core.tables import SESSION_AGENTS, SESSIONS

CSV_COLUMNS = ('session_id', 'start', 'end', 'last_event', 'input_tokens', 'output_tokens', 'tokens', 'requests',
               'cost_usd', 'agents')


class SessionOut(TypedDict):
    id: str
    started_at: str
    ended_at: str | None
    last_event_at: str
    active: bool
    input_tokens: int
    output_tokens: int
    tokens: int
    requests: int
    cost_micros: int
    cost_usd: str
    agents: list[str]


class SessionAgentOut(TypedDict):
    agent_id: str | None  # None: the calls of the session that named no agent
    first_request_at: str | None
    last_request_at: str | None
    input_tokens: int
    output_tokens: int
    tokens: int
    requests: int
    cost_micros: int
    cost_usd: str


class SessionDetail(SessionOut):
    by_agent: list[SessionAgentOut]


class SessionList(TypedDict):
    items: list[SessionOut]  # most recent first
    count: int


class SessionNotFound(NotFound):
    pass


def list_sessions(conn: Connection, limit: int = 30) -> list[SessionOut]:
    rows = conn.execute(select(SESSIONS).order_by(SESSIONS.c.started_at.desc(), SESSIONS.c.id).limit(limit)).all()
    agents = _agent_ids_of(conn, [r.id for r in rows])
    return [_session(r, sorted(agents.get(r.id, []))) for r in rows]


def get_session(conn: Connection, session_id: str) -> SessionDetail:
    row = conn.execute(select(SESSIONS).where(SESSIONS.c.id == session_id)).first()
    if row is None:
        raise SessionNotFound(f'no session {session_id!r}')
    breakdown = sorted(_agents_of(conn, [session_id]).get(session_id, []), key=lambda a: -a['cost_micros'])
    agents = _named(breakdown)
    unattributed = _unattributed(row, breakdown)
    if unattributed:
        breakdown.append(unattributed)
    return {**_session(row, agents), 'by_agent': breakdown}


def _named(breakdown: list[SessionAgentOut]) -> list[str]:
    """The agent ids of a breakdown (each row from the table names its agent; only `_unattributed` does not)."""
    return [a['agent_id'] for a in breakdown if a['agent_id'] is not None]


def _unattributed(row: Any, breakdown: list[SessionAgentOut]) -> SessionAgentOut | None:
    """Calls in the session that named no agent, so that the breakdown adds up to the session."""
    requests = row.requests - sum(a['requests'] for a in breakdown)
    if requests <= 0:
        return None
    input_tokens = row.input_tokens - sum(a['input_tokens'] for a in breakdown)
    cost = row.cost_micros - sum(a['cost_micros'] for a in breakdown)
    output_tokens = row.output_tokens - sum(a['output_tokens'] for a in breakdown)
    return {'agent_id': None, 'first_request_at': None, 'last_request_at': None, 'input_tokens': input_tokens,
            'output_tokens': output_tokens, 'tokens': input_tokens + output_tokens, 'requests': requests,
            'cost_micros': cost, 'cost_usd': micros_to_usd(cost)}


def end_session(conn: Connection, session_id: str, at: datetime | None = None) -> SessionDetail:
    result = conn.execute(update(SESSIONS).where(SESSIONS.c.id == session_id)
                          .values(ended_at=at or datetime.now(UTC)))
    if result.rowcount == 0:
        raise SessionNotFound(f'no session {session_id!r}')
    return get_session(conn, session_id)


def sessions_csv(conn: Connection, limit: int = 1000) -> str:
    """The sessions as CSV, through the shared writer (services/core/export.py): ids and agents are neutralised."""
    return csv_text(CSV_COLUMNS, ([s['id'], s['started_at'], s['ended_at'], s['last_event_at'], s['input_tokens'],
                                   s['output_tokens'], s['tokens'], s['requests'], s['cost_usd'],
                                   ' '.join(s['agents'])] for s in list_sessions(conn, limit)))


def _agents_of(conn: Connection, session_ids: list[str]) -> dict[str, list[SessionAgentOut]]:
    result: dict[str, list[SessionAgentOut]] = {}
    if not session_ids:
        return result
    rows = (r for chunk in chunked(session_ids)
            for r in conn.execute(select(SESSION_AGENTS).where(SESSION_AGENTS.c.session_id.in_(chunk))))
    for r in rows:
        result.setdefault(r.session_id, []).append({
            'agent_id': r.agent_id, 'first_request_at': _iso(r.first_ts), 'last_request_at': _iso(r.last_ts),
            'input_tokens': r.input_tokens, 'output_tokens': r.output_tokens,
            'tokens': r.input_tokens + r.output_tokens, 'requests': r.requests, 'cost_micros': r.cost_micros,
            'cost_usd': micros_to_usd(r.cost_micros)})
    return result


def _agent_ids_of(conn: Connection, session_ids: list[str]) -> dict[str, list[str]]:
    """The agents each session names, without their breakdown (a listing shows only the names)."""
    result: dict[str, list[str]] = {}
    for chunk in chunked(session_ids):
        for session_id, agent_id in conn.execute(select(SESSION_AGENTS.c.session_id, SESSION_AGENTS.c.agent_id)
                                                 .where(SESSION_AGENTS.c.session_id.in_(chunk))):
            if agent_id is not None:
                result.setdefault(session_id, []).append(agent_id)
    return result


def _session(row: Any, agents: list[str]) -> SessionOut:
    return {'id': row.id, 'started_at': row.started_at.isoformat(), 'ended_at': _iso(row.ended_at),
            'last_event_at': row.last_event_at.isoformat(), 'active': row.ended_at is None,
            'input_tokens': row.input_tokens, 'output_tokens': row.output_tokens,
            'tokens': row.input_tokens + row.output_tokens, 'requests': row.requests,
            'cost_micros': row.cost_micros, 'cost_usd': micros_to_usd(row.cost_micros), 'agents': agents}


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None
