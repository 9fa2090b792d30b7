"""Everything the dashboard shows, read in one go: one load serves every open tab."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select

from services.alerting.notify import last_eco_delivery
from services.budget import eco, thresholds
from services.core.periods import period_containing
from services.core.tables import ALERTS
from services.insights import planner
from services.insights.forecast import day_forecast
from services.sources.sync import sync_status
from services.spend import agents, budget, sessions, tasks
from services.spend.reconciliation import reconcile_last_days
from services.spend.rollups import breakdown

TOP_AGENTS = 10
DASHBOARD_AGENTS = 12
DASHBOARD_TASKS = 12
RECENT_SESSIONS = 30
RECONCILIATION_DAYS = 30
RECENT_ALERTS = 5


@dataclass(frozen=True)
class DashboardConfig:
    zone: Any  # ZoneInfo
    default_daily_micros: int
    configured_sources: tuple[str, ...] = ()
    tolerance: Decimal = Decimal('0.05')


def load_dashboard(conn: Connection, config: DashboardConfig, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    summary = budget.period_summary(conn, 'day', config.zone, config.default_daily_micros, now)
    today = period_containing('day', now, config.zone)
    return {
        'at': now.isoformat(),
        'summary': summary,
        'forecast': day_forecast(conn, summary['spent_micros'], summary['limit_micros'], config.zone, now),
        'by_agent': top_with_others(breakdown(conn, today.start, today.end, 'agent_id'), 'agent_id', TOP_AGENTS),
        'by_provider': breakdown(conn, today.start, today.end, 'provider'),
        'history': budget.history(conn, 30, config.zone, config.default_daily_micros, now),
        'eco': eco.get_eco(conn),
        'tasks': tasks.list_tasks(conn, limit=DASHBOARD_TASKS),
        'agents': agents.list_agents(conn, DASHBOARD_AGENTS),
        'sessions': sessions.list_sessions(conn, RECENT_SESSIONS),
        'reconciliation': [c.as_dict(config.tolerance)
                           for c in reversed(reconcile_last_days(conn, RECONCILIATION_DAYS, config.zone, now))],
        'sync': sync_status(conn, list(config.configured_sources)),
        'eco_delivery': last_eco_delivery(conn),
        'thresholds': thresholds.get_thresholds(conn).as_dict(),
        **alert_counts(conn),
        'plan': planner.plan_open_tasks(conn, summary['remaining_micros'], now),
    }


def alert_counts(conn: Connection) -> dict[str, Any]:
    """For the bell, the toasts and the alerts page: counts, the newest unacknowledged alerts, and a stamp that
    changes whenever any alert does."""
    open_alert = ALERTS.c.resolved_at.is_(None)
    unacked = open_alert & ALERTS.c.acknowledged_at.is_(None)
    row = conn.execute(select(
        func.count().filter(open_alert), func.count().filter(unacked), func.count(), func.max(ALERTS.c.id),
        func.max(ALERTS.c.last_seen_at), func.max(ALERTS.c.acknowledged_at), func.max(ALERTS.c.resolved_at))).one()
    recent = conn.execute(select(ALERTS.c.id, ALERTS.c.type, ALERTS.c.severity, ALERTS.c.message).where(unacked)
                          .order_by(ALERTS.c.id.desc()).limit(RECENT_ALERTS))
    stamp = '|'.join(str(v) for v in row)
    return {'alerts_open': row[0], 'alerts_unacknowledged': row[1], 'alerts_stamp': stamp,
            'alerts_recent': [dict(r._mapping) for r in recent]}


def top_with_others(items: list[dict[str, Any]], key: str, top: int) -> list[dict[str, Any]]:
    """The `top` largest items, then one 'others' item for the rest (items come largest first)."""
    labelled = [{**item, 'label': item[key] or '(no agent)'} for item in items]
    if len(labelled) <= top:
        return labelled
    rest = labelled[top:]
    others = {'label': f'others ({len(rest)})', key: None,
              'cost_micros': sum(i['cost_micros'] for i in rest), 'requests': sum(i['requests'] for i in rest)}
    return [*labelled[:top], others]
