"""Budget views: today's gauge, period breakdowns and the daily history."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, cast, overload
from zoneinfo import ZoneInfo

from sqlalchemy import Connection
from typing_extensions import TypedDict

from services.budget import limits
from services.core.context import BudgetContext
from services.core.errors import Invalid
from services.core.money import micros_to_usd, optional_usd
from services.core.periods import Period, checked_span, checked_utc, format_duration, local_days, period_containing
from services.spend.reconciliation import channel_totals, reconcile_span
from services.spend.rollups import (
    AgentSpend,
    ChannelSpend,
    Dimension,
    ModelSpend,
    ProviderSpend,
    breakdown,
    totals_between,
)


class Spent(TypedDict):
    spent_micros: int
    spent_usd: str


class ChannelSplit(TypedDict):
    litellm: Spent  # via the LiteLLM proxy
    direct: Spent  # straight to the provider


class PeriodSummary(TypedDict):
    """The gauge: the current day, week or month against its limit, reconciled with pulled and billed spend."""

    period: str  # day, week, month
    timezone: str
    start: str
    end: str
    spent_micros: int  # reconciled: via LiteLLM + direct
    spent_usd: str
    limit_micros: int | None  # None: no limit for the period
    limit_usd: str | None
    remaining_micros: int | None  # never negative; None without a limit
    remaining_usd: str | None
    percent: float | None  # of the limit, one place; None without a limit
    requests: int
    by_channel: ChannelSplit
    recorded_micros: int  # what the events alone add up to, before reconciliation
    recorded_usd: str
    resets_at: str
    resets_in_s: int
    resets_in: str  # '14 h 30 min'


class BreakdownSpan(TypedDict):
    period: str  # day, week, month, or custom for from/to
    start: str
    end: str
    total_micros: int  # the events' total (not reconciled)
    total_usd: str


class AgentBreakdown(BreakdownSpan):
    items: list[AgentSpend]


class ProviderBreakdown(BreakdownSpan):
    items: list[ProviderSpend]


class ModelBreakdown(BreakdownSpan):
    items: list[ModelSpend]


class ChannelBreakdown(BreakdownSpan):
    items: list[ChannelSpend]


class HistoryPoint(TypedDict):
    date: str  # the local day
    cost_micros: int
    cost_usd: str
    requests: int
    input_tokens: int
    output_tokens: int


class History(TypedDict):
    days: int
    timezone: str
    daily_limit_micros: int | None  # the current daily limit; None when there is none
    daily_limit_usd: str | None
    points: list[HistoryPoint]  # oldest first, today last


def limit_percent(spent: int, limit: int | None) -> float | None:
    """Spent as a percent of the limit, one place, as the gauge shows it; None without a limit (100 for any spend
    against a limit of $0)."""
    if limit is None:
        return None
    return round(100 * spent / limit, 1) if limit else (100.0 if spent else 0.0)


def period_summary(conn: Connection, budget: BudgetContext, period: str = 'day',
                   now: datetime | None = None) -> PeriodSummary:
    """Spent, limit, remaining and percent for the current day, week or month, split into via LiteLLM and direct
    after reconciliation with pulled and billed spend (services/spend/reconciliation.py)."""
    now = now or datetime.now(UTC)
    zone = budget.zone
    span = budget.period(period, now)
    channels = channel_totals(reconcile_span(conn, span.start, span.end, zone))
    spent = channels['total']
    limit = limits.get_limit(conn, period)
    remaining = None if limit is None else max(0, limit - spent)
    percent = limit_percent(spent, limit)
    seconds_left = span.seconds_left(now)
    return {
        'period': period,
        'timezone': zone.key,
        'start': span.start.isoformat(),
        'end': span.end.isoformat(),
        'spent_micros': spent, 'spent_usd': micros_to_usd(spent),
        'limit_micros': limit, 'limit_usd': optional_usd(limit),
        'remaining_micros': remaining, 'remaining_usd': optional_usd(remaining),
        'percent': percent,
        'requests': channels['requests'],
        'by_channel': {'litellm': _spent(channels['litellm']), 'direct': _spent(channels['direct'])},
        'recorded_micros': channels['events'], 'recorded_usd': micros_to_usd(channels['events']),
        'resets_at': span.end.isoformat(),
        'resets_in_s': seconds_left,
        'resets_in': format_duration(seconds_left),
    }


def _spent(micros: int) -> Spent:
    return {'spent_micros': micros, 'spent_usd': micros_to_usd(micros)}


def resolve_range(period: str | None, start: str | None, end: str | None, zone: ZoneInfo,
                  now: datetime | None = None) -> Period:
    """A named period containing now, or an explicit from/to (dates are local days, `to` date inclusive)."""
    if start or end:
        if not (start and end):
            raise Invalid('give both from and to, or neither')
        first, _ = _parse_point(start, zone, 'from')
        last, last_is_date = _parse_point(end, zone, 'to')
        if last_is_date:
            last += timedelta(days=1)  # a date is an inclusive local day
        if last <= first:
            raise Invalid('to must be after from')
        checked_span(first, last, 'to')
        return Period('custom', first, last)
    return period_containing(period or 'day', now or datetime.now(UTC), zone)


def _parse_point(text: str, zone: ZoneInfo, name: str) -> tuple[datetime, bool]:
    try:
        if len(text) == 10:
            value, is_date = datetime.combine(date.fromisoformat(text), time(0), tzinfo=zone), True
        else:
            value, is_date = datetime.fromisoformat(text.replace('Z', '+00:00')), False
    except ValueError:
        raise Invalid(f'{name}: not an ISO date or datetime: {text!r}') from None
    return checked_utc(value.replace(tzinfo=zone) if value.tzinfo is None else value, name), is_date


@overload
def spend_breakdown(conn: Connection, by: Literal['agent_id'], span: Period) -> AgentBreakdown: ...
@overload
def spend_breakdown(conn: Connection, by: Literal['provider'], span: Period) -> ProviderBreakdown: ...
@overload
def spend_breakdown(conn: Connection, by: Literal['model'], span: Period) -> ModelBreakdown: ...
@overload
def spend_breakdown(conn: Connection, by: Literal['channel'], span: Period) -> ChannelBreakdown: ...
@overload
def spend_breakdown(conn: Connection, by: Dimension,
                    span: Period) -> AgentBreakdown | ProviderBreakdown | ModelBreakdown | ChannelBreakdown: ...


def spend_breakdown(conn: Connection, by: Dimension,
                    span: Period) -> AgentBreakdown | ProviderBreakdown | ModelBreakdown | ChannelBreakdown:
    items = breakdown(conn, span.start, span.end, by)
    total = sum(i['cost_micros'] for i in items)
    head: BreakdownSpan = {'period': span.name, 'start': span.start.isoformat(), 'end': span.end.isoformat(),
                           'total_micros': total, 'total_usd': micros_to_usd(total)}
    return cast(Any, {**head, 'items': items})  # items of the dimension asked for: the overloads say which


def history(conn: Connection, budget: BudgetContext, days: int, now: datetime | None = None) -> History:
    """One point per local day for the last `days` days (today included), zero-filled."""
    now = now or datetime.now(UTC)
    zone = budget.zone
    spans = local_days(now.astimezone(zone).date(), days, zone)
    buckets = totals_between(conn, [s for _, s, _ in spans] + [spans[-1][2]])
    points: list[HistoryPoint] = []
    for index, (day, _start, _end) in enumerate(spans):
        totals = buckets.total(index)
        points.append({'date': day.isoformat(), 'cost_micros': totals.cost_micros,
                       'cost_usd': micros_to_usd(totals.cost_micros), 'requests': totals.requests,
                       'input_tokens': totals.input_tokens, 'output_tokens': totals.output_tokens})
    limit = limits.get_limit(conn, 'day')
    return {'days': days, 'timezone': zone.key, 'daily_limit_micros': limit, 'daily_limit_usd': optional_usd(limit),
            'points': points}

