"""Budget views: today's gauge, period breakdowns and the daily history."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from services.budget import limits as app_settings
from services.core.errors import Invalid
from services.core.money import money
from services.core.periods import Period, checked_utc, format_duration, local_days, period_containing
from services.spend.reconciliation import channel_totals, reconcile_span
from services.spend.rollups import breakdown, totals_between

CHANNELS = ('litellm', 'direct')


def period_summary(conn: Connection, period: str, zone: ZoneInfo, default_daily_micros: int,
                   now: datetime | None = None) -> dict[str, Any]:
    """Spent, limit, remaining and percent for the current day, week or month, split into via LiteLLM and direct
    after reconciliation with pulled and billed spend (services/spend/reconciliation.py)."""
    now = now or datetime.now(UTC)
    span = period_containing(period, now, zone)
    channels = channel_totals(reconcile_span(conn, span.start, span.end, zone))
    spent = channels['total']
    limit = app_settings.get_limit(conn, period, default_daily_micros)
    remaining = None if limit is None else max(0, limit - spent)
    percent = None if limit is None else round(100 * spent / limit, 1) if limit else (100.0 if spent else 0.0)
    seconds_left = span.seconds_left(now)
    return {
        'period': period,
        'timezone': zone.key,
        'start': span.start.isoformat(),
        'end': span.end.isoformat(),
        **money('spent', spent),
        **(money('limit', limit) if limit is not None else {'limit_micros': None, 'limit_usd': None}),
        **(money('remaining', remaining) if remaining is not None else
           {'remaining_micros': None, 'remaining_usd': None}),
        'percent': percent,
        'requests': channels['requests'],
        'by_channel': {channel: money('spent', channels[channel]) for channel in CHANNELS},
        **money('recorded', channels['events']),  # what the events alone add up to, before reconciliation
        'resets_at': span.end.isoformat(),
        'resets_in_s': seconds_left,
        'resets_in': format_duration(seconds_left),
    }


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


def spend_breakdown(conn: Connection, by: str, span: Period) -> dict[str, Any]:
    items = breakdown(conn, span.start, span.end, by)
    return {'period': span.name, 'start': span.start.isoformat(), 'end': span.end.isoformat(),
            **money('total', sum(i['cost_micros'] for i in items)), 'items': items}


def history(conn: Connection, days: int, zone: ZoneInfo, default_daily_micros: int,
            now: datetime | None = None) -> dict[str, Any]:
    """One point per local day for the last `days` days (today included), zero-filled."""
    now = now or datetime.now(UTC)
    spans = local_days(now.astimezone(zone).date(), days, zone)
    buckets = totals_between(conn, [s for _, s, _ in spans] + [spans[-1][2]])
    points = []
    for index, (day, _start, _end) in enumerate(spans):
        totals = buckets.total(index)
        points.append({'date': day.isoformat(), **money('cost', totals.cost_micros), 'requests': totals.requests,
                       'input_tokens': totals.input_tokens, 'output_tokens': totals.output_tokens})
    limit = app_settings.get_limit(conn, 'day', default_daily_micros)
    return {'days': days, 'timezone': zone.key,
            **(money('daily_limit', limit) if limit is not None else {'daily_limit_micros': None}),
            'points': points}

