"""Agents: this session's tokens and cost, lifetime cost, last request, and cost per request over the last 10."""
from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Connection, select
from typing_extensions import TypedDict

from services.core.db import chunked
from services.core.money import micros_to_usd
from services.core.tables import AGENTS, EVENTS, SESSION_AGENTS

RECENT_REQUESTS = 10
TREND_TOLERANCE = 0.10  # a change under 10% between the older and newer half of the window is "flat"
Trend = Literal['up', 'down', 'flat']


class AgentOut(TypedDict):
    id: str
    paused: bool  # every check of the agent is blocked
    first_seen_at: str
    last_request_at: str
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
    last_sessions = sorted({a.last_session_id for a in agents if a.last_session_id})
    current = {(r.session_id, r.agent_id): r for chunk in chunked(last_sessions)
               for r in conn.execute(select(SESSION_AGENTS).where(SESSION_AGENTS.c.session_id.in_(chunk)))}
    return [_agent(conn, a, current.get((a.last_session_id, a.id))) for a in agents]


def _agent(conn: Connection, agent: Any, session: Any) -> AgentOut:
    recent = [r.cost_micros for r in conn.execute(
        select(EVENTS.c.cost_micros).where(EVENTS.c.agent_id == agent.id)
        .order_by(EVENTS.c.ts.desc(), EVENTS.c.id.desc()).limit(RECENT_REQUESTS))]
    average = round(sum(recent) / len(recent)) if recent else 0
    session_cost = session.cost_micros if session else 0
    return {
        'id': agent.id,
        'paused': agent.paused,
        'first_seen_at': agent.first_seen_at.isoformat(),
        'last_request_at': agent.last_request_at.isoformat(),
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
