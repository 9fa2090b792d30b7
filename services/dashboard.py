"""Everything the dashboard shows, read in one go: one load serves every open tab."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

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


def load_dashboard(conn: Connection, config: DashboardConfig, now: datetime | None = None,
                   refused: Sequence[RefusedRequest] = ()) -> DashboardSnapshot:
    now = now or datetime.now(UTC)
    zone = config.budget.zone
    summary = budget.period_summary(conn, config.budget, 'day', now)
    today = config.budget.period('day', now)
    spend_today = breakdown(conn, today.start, today.end, 'agent_id')
    return DashboardSnapshot(
        at=now.isoformat(),
        summary=summary,
        forecast=day_forecast(conn, summary['spent_micros'], summary['limit_micros'], zone, now),
        by_agent=top_with_others(spend_today, 'agent_id', TOP_AGENTS),
        by_provider=breakdown(conn, today.start, today.end, 'provider'),
        history=budget.history(conn, config.budget, 30, now),
        eco=eco.get_eco(conn),
        tasks=tasks.list_tasks(conn, limit=DASHBOARD_TASKS),
        agents=agents.top_spenders(conn, {i['agent_id']: i['cost_micros'] for i in spend_today if i['agent_id']},
                                   DASHBOARD_AGENTS),
        sessions=sessions.list_sessions(conn, RECENT_SESSIONS),
        reconciliation=[c.as_dict(config.tolerance)
                        for c in reversed(reconcile_last_days(conn, RECONCILIATION_DAYS, zone, now))],
        sync=sync_status(conn, list(config.configured_sources)),
        refused=list(refused),
        eco_delivery=last_eco_delivery(conn),
        limit=limits.describe(limits.limit_policy(conn, 'day')),
        thresholds=thresholds.get_thresholds(conn).as_dict(),
        alerts=alert_counts(conn),
        plan=planner.plan_open_tasks(conn, summary['remaining_micros'], now),
    )


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
