"""Agents: this session's tokens and cost, lifetime cost, last request (when, which model, what it cost), and cost
per request over the last 10."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import CompoundSelect, Connection, String, bindparam, func, select, true, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from typing_extensions import TypedDict

from services.core.db import chunked
from services.core.money import micros_to_usd
from services.core.tables import AGENTS, EVENTS, SESSION_AGENTS

RECENT_REQUESTS = 10
RECENT_CHUNK = 100  # agents per statement of LIMIT lookups, far below SQLite's 500 SELECTs in one compound
TREND_TOLERANCE = 0.10  # a change under 10% between the older and newer half of the window is "flat"
Trend = Literal['up', 'down', 'flat']


class AgentOut(TypedDict):
    id: str
    paused: bool  # every check of the agent is blocked
    first_seen_at: str
    last_request_at: str
    last_model: str | None  # the model of the agent's newest request, and what that request cost
    last_cost_micros: int
    last_cost_usd: str
    session_id: str | None  # the agent's latest session; the session_* figures are its share of it
    session_input_tokens: int
    session_output_tokens: int
    session_tokens: int
    session_requests: int
    session_cost_micros: int
    session_cost_usd: str
    total_cost_micros: int  # all time
    total_cost_usd: str
    total_requests: int
    total_tokens: int
    avg_cost_per_request_micros: int  # over the last `recent_requests` requests
    avg_cost_per_request_usd: str
    recent_requests: int  # up to 10
    trend: Trend  # cost per request, newer half of the recent requests against the older half


class AgentToday(AgentOut):
    """An agent on the dashboard, with what it spent today (its place in the order)."""

    today_cost_micros: int


class AgentList(TypedDict):
    items: list[AgentOut]  # most recently active first
    count: int


def cost_trend(costs_newest_first: list[int]) -> Trend:
    """Compare the average cost of the newer half of the recent requests with the older half."""
    if len(costs_newest_first) < 2:
        return 'flat'
    half = len(costs_newest_first) // 2
    newer = sum(costs_newest_first[:half]) / half
    older = sum(costs_newest_first[half:]) / (len(costs_newest_first) - half)
    if older == 0:
        return 'up' if newer > 0 else 'flat'
    change = (newer - older) / older
    if change > TREND_TOLERANCE:
        return 'up'
    if change < -TREND_TOLERANCE:
        return 'down'
    return 'flat'


def list_agents(conn: Connection, limit: int | None = None) -> list[AgentOut]:
    """Agents, most recently active first."""
    agents = conn.execute(select(AGENTS).order_by(AGENTS.c.last_request_at.desc(), AGENTS.c.id).limit(limit)).all()
    return _outs(conn, agents)


def top_spenders(conn: Connection, spent_today: Mapping[str, int], limit: int) -> list[AgentToday]:
    """`limit` agents by what they spent today, most first, then by name: an order that a new request does not
    reshuffle (unlike the most recently active first), so a card stays where the pointer is."""
    spenders = sorted((agent for agent, cost in spent_today.items() if cost > 0),
                      key=lambda agent: (-spent_today[agent], agent))[:limit]
    rows = {row.id: row for row in conn.execute(select(AGENTS).where(AGENTS.c.id.in_(spenders)))}
    ranked = [rows[agent] for agent in spenders if agent in rows]
    if len(ranked) < limit:
        ranked += conn.execute(select(AGENTS).where(AGENTS.c.id.not_in(spenders)).order_by(AGENTS.c.id)
                               .limit(limit - len(ranked))).all()
    return [{**out, 'today_cost_micros': spent_today.get(out['id'], 0)} for out in _outs(conn, ranked)]


def _outs(conn: Connection, agents: Sequence[Any]) -> list[AgentOut]:
    last_sessions = sorted({a.last_session_id for a in agents if a.last_session_id})
    current = {(r.session_id, r.agent_id): r for chunk in chunked(last_sessions)
               for r in conn.execute(select(SESSION_AGENTS).where(SESSION_AGENTS.c.session_id.in_(chunk)))}
    recent = _recent_requests(conn, [a.id for a in agents])
    return [_agent(a, current.get((a.last_session_id, a.id)), recent[a.id]) for a in agents]


def _recent_requests(conn: Connection, agent_ids: list[str]) -> dict[str, list[Any]]:
    """Each agent's newest RECENT_REQUESTS events, newest first: one statement per chunk of agents, each of its parts
    an indexed lookup that stops after RECENT_REQUESTS rows (no query per agent, no scan of an agent's history)."""
    recent: dict[str, list[Any]] = {agent: [] for agent in agent_ids}
    if conn.dialect.name == 'postgresql' and agent_ids:
        # One LATERAL lookup per element of an array: the same statement text whatever the agents (prepared once),
        # where a UNION ALL of 50 lookups took PostgreSQL 6 ms to plan on every call, and SQLAlchemy as long to build
        agents = (func.unnest(bindparam('agents', agent_ids, type_=ARRAY(String))).table_valued('agent_id')
                  .render_derived(name='a'))
        lookup = (select(EVENTS.c.agent_id, EVENTS.c.ts, EVENTS.c.id, EVENTS.c.model, EVENTS.c.cost_micros)
                  .where(EVENTS.c.agent_id == agents.c.agent_id).order_by(EVENTS.c.ts.desc(), EVENTS.c.id.desc())
                  .limit(RECENT_REQUESTS).lateral('recent'))
        for row in conn.execute(select(lookup).select_from(agents.join(lookup, true()))):
            recent[row.agent_id].append(row)
        agent_ids = []  # done
    for chunk in chunked(agent_ids, RECENT_CHUNK):
        for row in conn.execute(_lookups(len(chunk)), {f'agent_{n}': agent for n, agent in enumerate(chunk)}):
            recent[row.agent_id].append(row)
    for rows in recent.values():
        rows.sort(key=lambda r: (r.ts, r.id), reverse=True)
    return recent


@lru_cache(maxsize=RECENT_CHUNK)
def _lookups(count: int) -> CompoundSelect:
    """`count` agents' newest events as one UNION ALL of LIMIT lookups, the agents bound as agent_0, agent_1...:
    built once per count (building it took longer than SQLite took to run it)."""
    lookups = [select(EVENTS.c.agent_id, EVENTS.c.ts, EVENTS.c.id, EVENTS.c.model, EVENTS.c.cost_micros)
               .where(EVENTS.c.agent_id == bindparam(f'agent_{n}')).order_by(EVENTS.c.ts.desc(), EVENTS.c.id.desc())
               .limit(RECENT_REQUESTS).subquery() for n in range(count)]
    return union_all(*(select(lookup) for lookup in lookups))


def _agent(agent: Any, session: Any, recent_rows: list[Any]) -> AgentOut:
    recent = [r.cost_micros for r in recent_rows]
    last_cost = recent[0] if recent else 0
    average = round(sum(recent) / len(recent)) if recent else 0
    session_cost = session.cost_micros if session else 0
    return {
        'id': agent.id,
        'paused': agent.paused,
        'first_seen_at': agent.first_seen_at.isoformat(),
        'last_request_at': agent.last_request_at.isoformat(),
        'last_model': recent_rows[0].model if recent_rows else None,
        'last_cost_micros': last_cost,
        'last_cost_usd': micros_to_usd(last_cost),
        'session_id': agent.last_session_id,
        'session_input_tokens': session.input_tokens if session else 0,
        'session_output_tokens': session.output_tokens if session else 0,
        'session_tokens': (session.input_tokens + session.output_tokens) if session else 0,
        'session_requests': session.requests if session else 0,
        'session_cost_micros': session_cost,
        'session_cost_usd': micros_to_usd(session_cost),
        'total_cost_micros': agent.cost_micros,
        'total_cost_usd': micros_to_usd(agent.cost_micros),
        'total_requests': agent.requests,
        'total_tokens': agent.input_tokens + agent.output_tokens,
        'avg_cost_per_request_micros': average,
        'avg_cost_per_request_usd': micros_to_usd(average),
        'recent_requests': len(recent),
        'trend': cost_trend(recent),
    }
