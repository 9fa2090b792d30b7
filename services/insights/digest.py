"""The daily digest: one local day's spend against the day limit, the top agents and models, the alerts and anomalies
raised that day, today's forecast, and the biggest saving the optimiser finds in that day's calls.

Every figure comes from the read model that already shows it: the spend is the reconciled day total (as the reports'
`day_spend` and the gauge count it), the limit is the day limit policy (services/budget/limits.py: the figure the
gauge calls the limit; limits keep no history, so it is the one in force now), the top lists come from the rollups,
the forecast is services/insights/forecast.py's for today, and the saving is services/insights/optimize.py's.
The renderers (services/insights/digest_render.py) turn this into text, HTML, Slack blocks and webhook JSON.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select
from typing_extensions import TypedDict

from services.budget import limits
from services.core.context import BudgetContext
from services.core.errors import Invalid
from services.core.money import micros_to_usd
from services.core.periods import Period, as_utc, local_midnight
from services.core.tables import ALERTS
from services.insights.forecast import day_forecast
from services.insights.optimize import optimize
from services.insights.reports import day_spend
from services.spend.budget import limit_percent, period_summary
from services.spend.rollups import Totals, totals_between
from services.usage.pricing import Pricer

TOP = 3  # agents and models listed
MAX_ALERTS = 20  # alerts (and anomalies) listed; the counts say how many there were
FIRST_DAY = date(2000, 1, 1)
ANOMALY = 'anomaly'


class DigestSpend(TypedDict):
    name: str | None  # the agent id, or provider:model; None: calls that named no agent
    cost_micros: int
    cost_usd: str
    requests: int


class DigestAlert(TypedDict):
    id: int
    type: str
    severity: str
    message: str
    created_at: str


class DigestForecast(TypedDict):
    """Today (the day the digest is read), as the dashboard's forecast says it at the time of the digest."""

    day: str
    spent_micros: int
    spent_usd: str
    projected_micros: int
    projected_usd: str
    limit_micros: int | None
    limit_usd: str | None
    state: str  # no_limit, exceeded, exhausts, holds
    eta: str | None  # local HH:MM when the limit is reached today
    text: str  # 'Budget exhausted at ~16:45', 'Holds until midnight: ...'


class DigestSaving(TypedDict):
    """The single largest positive saving the optimiser found in the day's calls: one agent on one model."""

    agent_id: str | None
    models: list[str]  # the provider:model the agent's calls ran on
    provider: str  # the candidate
    model: str
    kind: str  # cheaper_tier or substitute
    saving_micros: int
    saving_usd: str
    saving_percent: float | None
    saving_per_month_micros: int | None
    saving_per_month_usd: str | None
    note: str  # the optimiser's: cost only, nothing about quality


class DigestOut(TypedDict):
    day: str  # the local day the digest is about (YYYY-MM-DD)
    timezone: str
    start: str  # its UTC range
    end: str
    generated_at: str
    spent_micros: int  # reconciled: via LiteLLM + direct
    spent_usd: str
    requests: int
    limit_micros: int | None  # the day limit; None: no limit
    limit_usd: str | None
    percent: float | None  # of the limit, one place
    top_agents: list[DigestSpend]  # the most spent first, at most TOP
    top_models: list[DigestSpend]
    alerts: list[DigestAlert]  # raised that day, anomalies not among them, oldest first, at most MAX_ALERTS
    alerts_count: int
    anomalies: list[DigestAlert]
    anomalies_count: int
    forecast: DigestForecast
    saving: DigestSaving | None


def default_day(now: datetime, zone: ZoneInfo) -> date:
    """Yesterday, in the zone's days."""
    return as_utc(now).astimezone(zone).date() - timedelta(days=1)


def checked_digest_day(day: date, now: datetime, zone: ZoneInfo) -> date:
    """A day from 2000 up to today (local): a digest of the future has nothing in it."""
    today = as_utc(now).astimezone(zone).date()
    if day > today:
        raise Invalid(f'day: {day} is in the future (today is {today} in {zone.key})')
    if day < FIRST_DAY:
        raise Invalid(f'day: must be {FIRST_DAY} or later, got {day}')
    return day


def parse_day(text: str | None, now: datetime, zone: ZoneInfo) -> date:
    """`YYYY-MM-DD` (checked), or yesterday when not given."""
    if not text:
        return default_day(now, zone)
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise Invalid(f'day: not a date (YYYY-MM-DD): {text!r}') from None
    return checked_digest_day(day, now, zone)


def day_key(day: date) -> int:
    """The day as the int that identifies its digest deliveries (20260310)."""
    return day.year * 10_000 + day.month * 100 + day.day


def build_digest(conn: Connection, budget: BudgetContext, pricer: Pricer, substitutes: Sequence[tuple[str, str]] = (),
                 day: date | None = None, now: datetime | None = None) -> DigestOut:
    """The digest of `day` (yesterday by default) as of `now`."""
    now = as_utc(now or datetime.now(UTC))
    zone = budget.zone
    day = checked_digest_day(day or default_day(now, zone), now, zone)
    span = Period('day', local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone))
    spent = sum(d.total for d in day_spend(conn, span.start, span.end, zone))
    limit = limits.get_limit(conn, 'day')
    by_agent, by_model, requests = _top_lists(conn, span)
    alert_rows, anomaly_rows, alerts_count, anomalies_count = _alerts(conn, span)
    return {
        'day': day.isoformat(), 'timezone': zone.key, 'start': span.start.isoformat(), 'end': span.end.isoformat(),
        'generated_at': now.isoformat(),
        'spent_micros': spent, 'spent_usd': micros_to_usd(spent), 'requests': requests,
        'limit_micros': limit, 'limit_usd': None if limit is None else micros_to_usd(limit),
        'percent': limit_percent(spent, limit),
        'top_agents': by_agent, 'top_models': by_model,
        'alerts': alert_rows, 'alerts_count': alerts_count, 'anomalies': anomaly_rows,
        'anomalies_count': anomalies_count,
        'forecast': _forecast(conn, budget, now),
        'saving': _saving(conn, pricer, span, zone, substitutes, now),
    }


def _spend(name: str | None, totals: Totals) -> DigestSpend:
    return {'name': name, 'cost_micros': totals.cost_micros, 'cost_usd': micros_to_usd(totals.cost_micros),
            'requests': totals.requests}


def _top_lists(conn: Connection, span: Period) -> tuple[list[DigestSpend], list[DigestSpend], int]:
    """The TOP agents and provider:models by recorded cost (one rollup read), and the day's requests."""
    groups = totals_between(conn, [span.start, span.end], ('agent_id', 'provider', 'model')).groups[0]
    agents: dict[str | None, Totals] = {}
    models: dict[str, Totals] = {}
    requests = 0
    for (agent_id, provider, model), totals in groups.items():
        agents.setdefault(agent_id, Totals()).merge(totals)
        models.setdefault(f'{provider}:{model}', Totals()).merge(totals)
        requests += totals.requests

    def top(found: dict) -> list[DigestSpend]:
        ranked = sorted(found.items(), key=lambda kv: (-kv[1].cost_micros, -kv[1].requests, kv[0] or ''))
        return [_spend(name, totals) for name, totals in ranked if totals.requests or totals.cost_micros][:TOP]
    return top(agents), top(models), requests


def _alerts(conn: Connection, span: Period) -> tuple[list[DigestAlert], list[DigestAlert], int, int]:
    """The alerts opened in the day (by created_at, an indexed column), anomalies apart; at most MAX_ALERTS each."""
    in_day = (ALERTS.c.created_at >= span.start, ALERTS.c.created_at < span.end)
    counted = select(ALERTS.c.type, func.count()).where(*in_day).group_by(ALERTS.c.type)
    by_type: dict[str, int] = {type_: count for type_, count in conn.execute(counted)}
    anomalies = by_type.pop(ANOMALY, 0)
    columns = (ALERTS.c.id, ALERTS.c.type, ALERTS.c.severity, ALERTS.c.message, ALERTS.c.created_at)

    def listed(*where: object) -> list[DigestAlert]:
        rows = conn.execute(select(*columns).where(*in_day, *where)  # type: ignore[arg-type]
                            .order_by(ALERTS.c.created_at, ALERTS.c.id).limit(MAX_ALERTS))
        return [{'id': r.id, 'type': r.type, 'severity': r.severity, 'message': r.message,
                 'created_at': as_utc(r.created_at).isoformat()} for r in rows]
    return listed(ALERTS.c.type != ANOMALY), listed(ALERTS.c.type == ANOMALY), sum(by_type.values()), anomalies


def _forecast(conn: Connection, budget: BudgetContext, now: datetime) -> DigestForecast:
    summary = period_summary(conn, budget, 'day', now)
    forecast = day_forecast(conn, summary['spent_micros'], summary['limit_micros'], budget.zone, now)
    eta = forecast['eta']
    return {'day': now.astimezone(budget.zone).date().isoformat(),
            'spent_micros': forecast['spent_micros'], 'spent_usd': forecast['spent_usd'],
            'projected_micros': forecast['projected_micros'], 'projected_usd': forecast['projected_usd'],
            'limit_micros': forecast['limit_micros'], 'limit_usd': forecast['limit_usd'], 'state': forecast['state'],
            'eta': datetime.fromisoformat(eta).astimezone(budget.zone).strftime('%H:%M') if eta else None,
            'text': forecast['text']}


def _saving(conn: Connection, pricer: Pricer, span: Period, zone: ZoneInfo, substitutes: Sequence[tuple[str, str]],
            now: datetime) -> DigestSaving | None:
    """The optimiser over the day: the one agent-and-candidate pair that saves the most (all of the agent's calls
    on one model), or None when no candidate is cheaper."""
    found = optimize(conn, pricer, span, zone, substitutes, None, now)
    best: DigestSaving | None = None
    for agent in found['agents']:
        for candidate in agent['candidates']:
            if candidate['saving_micros'] <= 0 or (best is not None
                                                  and candidate['saving_micros'] <= best['saving_micros']):
                continue
            best = {'agent_id': agent['agent_id'],
                    'models': [f'{m["provider"]}:{m["model"]}' for m in agent['models']],
                    'provider': candidate['provider'], 'model': candidate['model'], 'kind': candidate['kind'],
                    'saving_micros': candidate['saving_micros'], 'saving_usd': candidate['saving_usd'],
                    'saving_percent': candidate['saving_percent'],
                    'saving_per_month_micros': candidate['saving_per_month_micros'],
                    'saving_per_month_usd': candidate['saving_per_month_usd'], 'note': found['note']}
    return best
