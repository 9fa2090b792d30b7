"""Everything the dashboard shows: one load serves every open tab. The snapshot is loaded in named parts (`Part`);
an event reloads only the parts its topic touches (`TOPIC_PARTS`), and the rest is kept from the previous load."""
from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import Connection, func, select
from typing_extensions import TypedDict

from services.accounts.refusals import RefusedRequest
from services.alerting.alerts import Severity
from services.alerting.notify import DeliveryOut, last_eco_delivery
from services.budget import eco, limits, thresholds
from services.budget.eco import EcoState
from services.budget.limits import LimitOut
from services.budget.thresholds import ThresholdsOut
from services.core.context import BudgetContext
from services.core.tables import ALERTS
from services.insights import planner
from services.insights.forecast import ForecastOut, day_forecast
from services.insights.planner import PlanOut
from services.live.topics import LiveEvent, Topic, UsageChanged
from services.sources.sync import SourceStatus, sync_status
from services.spend import agents, budget, sessions, tasks
from services.spend.agents import AgentToday
from services.spend.budget import History, PeriodSummary
from services.spend.reconciliation import ReconciledDay, reconcile_last_days
from services.spend.rollups import AgentSpend, ProviderSpend, breakdown
from services.spend.sessions import SessionOut
from services.spend.tasks import TaskOut

TOP_AGENTS = 10
DASHBOARD_AGENTS = 12
DASHBOARD_TASKS = 12
RECENT_SESSIONS = 30
RECONCILIATION_DAYS = 30
RECENT_ALERTS = 5


@dataclass(frozen=True)
class DashboardConfig:
    budget: BudgetContext
    configured_sources: tuple[str, ...] = ()
    tolerance: Decimal = Decimal('0.05')


class AgentBar(TypedDict):
    """A bar of the by-agent chart: one of the top agents, or the rest summed up as 'others (n)'."""

    label: str  # the agent, '(no agent)' or 'others (n)'
    agent_id: str | None  # None for the calls that named no agent, and for 'others'
    cost_micros: int
    requests: int


class RecentAlert(TypedDict):
    id: int
    type: str
    severity: Severity
    message: str


class AlertCounts(TypedDict):
    """For the bell, the toasts and the alerts page."""

    open: int
    unacknowledged: int
    stamp: str  # changes whenever any alert does
    recent: list[RecentAlert]  # the newest unacknowledged, newest first


@dataclass(frozen=True)
class DashboardSnapshot:
    """One load of the dashboard (`load_dashboard`), shared by every open page through the feed (app/feed.py)."""

    at: str
    summary: PeriodSummary  # today: the gauge and the channel strip
    forecast: ForecastOut  # today
    by_agent: list[AgentBar]  # today, the top agents and the others
    by_provider: list[ProviderSpend]  # today
    history: History  # the last 30 days
    eco: EcoState
    tasks: list[TaskOut]  # the most recently updated
    agents: list[AgentToday]  # the top spenders today, then by name: an order new requests do not shuffle
    sessions: list[SessionOut]  # the most recent
    reconciliation: list[ReconciledDay]  # the last 30 days per provider, newest first
    sync: list[SourceStatus]
    refused: list[RefusedRequest]  # requests refused for their token (services/accounts/refusals.py)
    eco_delivery: DeliveryOut | None  # how the last eco-mode change reached the n8n webhook
    limit: LimitOut | None  # today's limit: the global policy the gauge, /check and the forecast read
    thresholds: ThresholdsOut
    alerts: AlertCounts
    plan: PlanOut | None  # the pending tasks within what is left today; None without a daily limit


class Part(StrEnum):
    """A named part of the snapshot, loaded on its own: a topic reloads only the parts it touches (TOPIC_PARTS)."""

    TODAY = 'today'  # summary, forecast, by_provider, history: the gauge, the channel strip, the forecast, charts
    AGENTS = 'agents'  # by_agent, agents: the by-agent chart and the agent cards
    TASKS = 'tasks'
    PLAN = 'plan'  # reads TODAY's remaining budget: loaded after it
    SESSIONS = 'sessions'
    RECONCILIATION = 'reconciliation'
    SOURCES = 'sources'  # sync, refused
    ECO = 'eco'  # eco, eco_delivery
    BUDGET = 'budget'  # limit, thresholds
    ALERTS = 'alerts'


ALL_PARTS = frozenset(Part)
_SPEND = frozenset({Part.TODAY, Part.AGENTS, Part.TASKS, Part.PLAN, Part.SESSIONS, Part.RECONCILIATION})
_LIMITS = frozenset({Part.TODAY, Part.PLAN, Part.BUDGET})
TOPIC_PARTS: dict[Topic, frozenset[Part]] = {
    Topic.USAGE: _SPEND,
    Topic.SETTINGS: _LIMITS,
    Topic.POLICIES: _LIMITS,
    Topic.SESSIONS: frozenset({Part.SESSIONS}),
    Topic.TASKS: frozenset({Part.TASKS, Part.PLAN}),
    Topic.ECO: frozenset({Part.ECO}),
    Topic.AGENTS: frozenset({Part.AGENTS}),
    Topic.RETENTION: frozenset({Part.AGENTS}),  # totals stay (rollups); an agent's last call may have been pruned
    # pulled spend is in the strip and what is left for the plan; a good pull resolves its sync-failure alert
    Topic.SYNC: frozenset({Part.TODAY, Part.PLAN, Part.RECONCILIATION, Part.SOURCES, Part.ALERTS}),
    Topic.ALERTS: frozenset({Part.ALERTS}),
    Topic.ALERT_RAISED: frozenset({Part.ALERTS}),
    Topic.DELIVERIES: frozenset({Part.ECO}),  # the eco webhook's delivery (an alert's shows on /alerts)
    Topic.REFUSALS: frozenset({Part.SOURCES}),
}


def parts_for(event: LiveEvent) -> frozenset[Part]:
    """What an event makes stale. Another instance's writes come as one `UsageChanged(remote=True)` for all its
    topics (services/live/cluster.py): everything."""
    if isinstance(event, UsageChanged) and event.remote:
        return ALL_PARTS
    return TOPIC_PARTS.get(event.topic, frozenset())


@dataclass
class _Reading:
    conn: Connection
    config: DashboardConfig
    now: datetime
    refused: Sequence[RefusedRequest]
    fields: dict[str, Any]  # the snapshot so far: the previous one's fields, replaced part by part


def _today(r: _Reading) -> dict[str, Any]:
    summary = budget.period_summary(r.conn, r.config.budget, 'day', r.now)
    today = r.config.budget.period('day', r.now)
    return {'summary': summary,
            'forecast': day_forecast(r.conn, summary['spent_micros'], summary['limit_micros'], r.config.budget.zone,
                                     r.now),
            'by_provider': breakdown(r.conn, today.start, today.end, 'provider'),
            'history': budget.history(r.conn, r.config.budget, 30, r.now)}


def _agents(r: _Reading) -> dict[str, Any]:
    today = r.config.budget.period('day', r.now)
    spend_today = breakdown(r.conn, today.start, today.end, 'agent_id')
    return {'by_agent': top_with_others(spend_today, 'agent_id', TOP_AGENTS),
            'agents': agents.top_spenders(r.conn, {i['agent_id']: i['cost_micros'] for i in spend_today
                                                   if i['agent_id']}, DASHBOARD_AGENTS)}


def _plan(r: _Reading) -> dict[str, Any]:
    return {'plan': planner.plan_open_tasks(r.conn, r.fields['summary']['remaining_micros'], r.now)}


def _reconciliation(r: _Reading) -> dict[str, Any]:
    days = reconcile_last_days(r.conn, RECONCILIATION_DAYS, r.config.budget.zone, r.now)
    return {'reconciliation': [c.as_dict(r.config.tolerance) for c in reversed(days)]}


PARTS: dict[Part, Callable[[_Reading], dict[str, Any]]] = {  # in load order
    Part.TODAY: _today,
    Part.AGENTS: _agents,
    Part.TASKS: lambda r: {'tasks': tasks.list_tasks(r.conn, limit=DASHBOARD_TASKS)},
    Part.PLAN: _plan,
    Part.SESSIONS: lambda r: {'sessions': sessions.list_sessions(r.conn, RECENT_SESSIONS)},
    Part.RECONCILIATION: _reconciliation,
    Part.SOURCES: lambda r: {'sync': sync_status(r.conn, list(r.config.configured_sources)),
                             'refused': list(r.refused)},
    Part.ECO: lambda r: {'eco': eco.get_eco(r.conn), 'eco_delivery': last_eco_delivery(r.conn)},
    Part.BUDGET: lambda r: {'limit': limits.describe(limits.limit_policy(r.conn, 'day')),
                            'thresholds': thresholds.get_thresholds(r.conn).as_dict()},
    Part.ALERTS: lambda r: {'alerts': alert_counts(r.conn)},
}


def load_dashboard(conn: Connection, config: DashboardConfig, now: datetime | None = None,
                   refused: Sequence[RefusedRequest] = (), previous: DashboardSnapshot | None = None,
                   parts: Collection[Part] = ALL_PARTS) -> DashboardSnapshot:
    """Everything; or, given the `previous` snapshot, only `parts`, the rest kept from it (the very same objects)."""
    fields = {} if previous is None else {k: v for k, v in vars(previous).items() if k != 'at'}
    reading = _Reading(conn, config, now or datetime.now(UTC), refused, fields)
    for part, load in PARTS.items():
        if previous is None or part in parts:
            fields.update(load(reading))
    return DashboardSnapshot(at=reading.now.isoformat(), **fields)


def alert_counts(conn: Connection) -> AlertCounts:
    """Counts, the newest unacknowledged alerts, and a stamp that changes whenever any alert does."""
    open_alert = ALERTS.c.resolved_at.is_(None)
    unacked = open_alert & ALERTS.c.acknowledged_at.is_(None)
    row = conn.execute(select(
        func.count().filter(open_alert), func.count().filter(unacked), func.count(), func.max(ALERTS.c.id),
        func.max(ALERTS.c.last_seen_at), func.max(ALERTS.c.acknowledged_at), func.max(ALERTS.c.resolved_at))).one()
    recent = conn.execute(select(ALERTS.c.id, ALERTS.c.type, ALERTS.c.severity, ALERTS.c.message).where(unacked)
                          .order_by(ALERTS.c.id.desc()).limit(RECENT_ALERTS))
    stamp = '|'.join(str(v) for v in row)
    return {'open': row[0], 'unacknowledged': row[1], 'stamp': stamp,
            'recent': [{'id': r.id, 'type': r.type, 'severity': r.severity, 'message': r.message} for r in recent]}


def top_with_others(items: Sequence[AgentSpend], key: Literal['agent_id'], top: int) -> list[AgentBar]:
    """The `top` largest items, then one 'others' item for the rest (items come largest first)."""
    labelled: list[AgentBar] = [{'label': item[key] or '(no agent)', 'agent_id': item[key],
                                 'cost_micros': item['cost_micros'], 'requests': item['requests']} for item in items]
    if len(labelled) <= top:
        return labelled
    rest = labelled[top:]
    others: AgentBar = {'label': f'others ({len(rest)})', 'agent_id': None,
                        'cost_micros': sum(i['cost_micros'] for i in rest),
                        'requests': sum(i['requests'] for i in rest)}
    return [*labelled[:top], others]
