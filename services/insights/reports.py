"""Reports: summary, trend, comparison and projection, each a plain `Report` that every format renders.

A report's rows are plain values (text, whole numbers, money as integer micro-USD, percentages as `Decimal`), typed
by its columns, so JSON, CSV, Markdown and the terminal table (services/insights/report_formats.py) show the same
figures.

Spend by provider, model and agent comes from the events (hourly rollups); the total is the reconciled one that the
budget summary reports (services/spend/reconciliation.py). Reconciliation works on whole local days, so a range that
cuts a day (an ISO datetime from/to) counts the events alone for the cut part. Where the reconciled total exceeds what
the events add up to (a provider billed more than was recorded), each breakdown shows the difference as an explicit
"unattributed (billed)" row, so every group adds up to the total.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from services.core.context import BudgetContext
from services.core.periods import (
    PERIODS,
    Period,
    PeriodName,
    period_containing,
)
from services.insights.chargeback import chargeback
from services.insights.efficiency import EfficiencyBy, token_efficiency
from services.insights.forecast import budget_forecast
from services.insights.report_days import (
    day_spend,
    describe_span,
    is_day_aligned,
    local,
    midnight,
    span_parameters,
)
from services.insights.report_model import (  # noqa: F401  (the model is part of this module's interface)
    ALLOCATION_GROUP,
    DEFAULT_GROUP_BY,
    DEFAULT_PERIOD,
    GROUP_BY,
    KINDS,
    Column,
    Report,
    ReportError,
    filename_stem,
    group_by_for,
)
from services.spend.budget import resolve_range
from services.spend.kept import kept
from services.spend.rollups import Totals, totals_between

GROUPS = {'provider': 'provider', 'model': 'model', 'agent': 'agent_id'}
UNATTRIBUTED = 'unattributed (billed)'
TotalsBy = dict[str | None, Totals]  # a dimension's value (None: the calls that named none) -> its totals
CHANNELS = ('litellm', 'direct')
_CENT = Decimal('0.01')


# --- reconciled spend per local day -----------------------------------------------------------------------------

# --- shared pieces ----------------------------------------------------------------------------------------------

def _percent(part: int, whole: int) -> Decimal:
    return (Decimal(100 * part) / whole).quantize(_CENT, ROUND_HALF_EVEN) if whole else Decimal('0.00')


def change_percent(current: int, previous: int) -> Decimal | None:
    """Change from previous to current in percent; None ("new") when there was nothing before."""
    if previous == 0:
        return Decimal('0.00') if current == 0 else None
    return (Decimal(100 * (current - previous)) / previous).quantize(_CENT, ROUND_HALF_EVEN)


def _groups(group_by: str) -> list[str]:
    return list(GROUPS) if group_by == 'all' else [group_by]


def by_dimension(conn: Connection, edges: list[datetime], dimensions: Iterable[str]) -> list[dict[str, TotalsBy]]:
    """For each interval between `edges`, each dimension's totals by its value (a report shows no cross product).
    In a server, each dimension is read on its own, from the days and hours kept for it: a few dozen groups a day,
    where (agent, provider, model, channel) together are hundreds. A one-off read (a CLI command) reads the cross
    product once instead of the days once per dimension."""
    wanted = list(dict.fromkeys([*dimensions, 'channel']))  # the channel's for the recorded total: the fewest groups
    if kept.on:
        read = {name: [{key[0]: totals for key, totals in group.items()}
                       for group in totals_between(conn, edges, (name,)).groups] for name in wanted}
    else:
        groups = totals_between(conn, edges, FULL_KEY).groups
        read = {name: [_collapse(group, FULL_KEY.index(name)) for group in groups] for name in wanted}
    return [{name: read[name][index] for name in wanted} for index in range(len(edges) - 1)]


def _collapse(groups: dict[tuple, Totals], index: int) -> TotalsBy:
    """(agent_id, provider, model, channel) totals onto one of them."""
    result: TotalsBy = {}
    for key, totals in groups.items():
        mine = result.get(key[index])
        if mine is None:
            result[key[index]] = totals.copy()
        else:
            mine.merge(totals)
    return result


FULL_KEY = ('agent_id', 'provider', 'model', 'channel')


def _recorded(dimensions: dict[str, TotalsBy]) -> Totals:
    recorded = Totals()
    for totals in dimensions['channel'].values():
        recorded.merge(totals)
    return recorded


# --- summary ----------------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = [Column('group'), Column('name', null_text='(none)'), Column('requests', 'int'),
                   Column('input_tokens', 'int'), Column('output_tokens', 'int'), Column('cost', 'usd'),
                   Column('share_percent', 'percent')]


def summary(conn: Connection, span: Period, zone: ZoneInfo, group_by: str = 'all') -> Report:
    """Totals for the range by provider, model and agent (or one of them), by channel, and the reconciled total."""
    days = day_spend(conn, span.start, span.end, zone)
    litellm, direct = sum(d.litellm for d in days), sum(d.direct for d in days)
    total = litellm + direct
    [events] = by_dimension(conn, [span.start, span.end], (GROUPS[group] for group in _groups(group_by)))
    recorded = _recorded(events)
    rows: list[dict[str, Any]] = []

    def row(group: str, name: str | None, t: Totals, cost: int) -> dict[str, Any]:
        return {'group': group, 'name': name, 'requests': t.requests, 'input_tokens': t.input_tokens,
                'output_tokens': t.output_tokens, 'cost': cost, 'share_percent': _percent(cost, total)}

    for group in _groups(group_by):
        for name, t in sorted(events[GROUPS[group]].items(), key=lambda kv: (-kv[1].cost_micros, str(kv[0]))):
            rows.append(row(group, name, t, t.cost_micros))
        if total > recorded.cost_micros:
            rows.append(row(group, UNATTRIBUTED, Totals(), total - recorded.cost_micros))
    for channel, cost in (('litellm', litellm), ('direct', direct)):
        t = Totals()
        for name, totals in events['channel'].items():
            if (name == 'litellm') == (channel == 'litellm'):
                t.merge(totals)
        rows.append(row('channel', channel, t, cost))
    rows.append(row('total', 'total', recorded, total))
    aligned = is_day_aligned(span, zone)
    return Report('summary', f'Spend summary, {describe_span(span, zone)}',
                  span_parameters(span, zone, aligned, group_by=group_by), SUMMARY_COLUMNS, rows,
                  {'total': total, 'litellm': litellm, 'direct': direct, 'recorded': recorded.cost_micros,
                   'unattributed': total - recorded.cost_micros})


# --- trend ------------------------------------------------------------------------------------------------------

def _bucket_edges(span: Period, zone: ZoneInfo, interval: str) -> list[datetime]:
    edges = [span.start]
    day = local(span.start, zone).date() + timedelta(days=1)
    if interval == 'week':
        day += timedelta(days=(7 - day.weekday()) % 7)
    step = timedelta(days=7 if interval == 'week' else 1)
    while (edge := midnight(day, zone)) < span.end:
        edges.append(edge)
        day += step
    return [*edges, span.end]


def trend(conn: Connection, span: Period, zone: ZoneInfo, interval: str = 'day') -> Report:
    """One row per local day (or week from Monday) of the range, zero-filled: the events and the reconciled spend."""
    if interval not in ('day', 'week'):
        raise ReportError(f'group_by: must be day or week for the trend report, got {interval!r}')
    edges = _bucket_edges(span, zone, interval)
    buckets = totals_between(conn, edges)
    reconciled: list[list[int]] = [[0, 0] for _ in range(len(edges) - 1)]
    index = 0
    for day in day_spend(conn, span.start, span.end, zone):
        while day.start >= edges[index + 1]:
            index += 1
        reconciled[index][0] += day.litellm
        reconciled[index][1] += day.direct
    rows: list[dict[str, Any]] = []
    for i in range(len(edges) - 1):
        t = buckets.total(i)
        litellm, direct = reconciled[i]
        rows.append({interval: local(edges[i], zone).date().isoformat(), 'requests': t.requests,
                     'input_tokens': t.input_tokens, 'output_tokens': t.output_tokens, 'recorded': t.cost_micros,
                     'litellm': litellm, 'direct': direct, 'total': litellm + direct})
    columns = [Column(interval), Column('requests', 'int'), Column('input_tokens', 'int'),
               Column('output_tokens', 'int'), Column('recorded', 'usd'), Column('litellm', 'usd'),
               Column('direct', 'usd'), Column('total', 'usd')]
    label = 'Daily' if interval == 'day' else 'Weekly'
    return Report('trend', f'{label} spend, {describe_span(span, zone)}',
                  span_parameters(span, zone, is_day_aligned(span, zone), group_by=interval), columns, rows,
                  {'recorded': sum(r['recorded'] for r in rows), 'litellm': sum(r['litellm'] for r in rows),
                   'direct': sum(r['direct'] for r in rows), 'total': sum(r['total'] for r in rows)})


# --- comparison -------------------------------------------------------------------------------------------------

def previous_span(span: Period, zone: ZoneInfo) -> Period:
    """The day, week or month before a named period; before a range of local days, as many local days; else the
    same length of time just before."""
    if span.name in ('day', 'week', 'month'):
        return period_containing(span.name, span.start - timedelta(microseconds=1), zone)
    if is_day_aligned(span, zone):
        first, after = local(span.start, zone).date(), local(span.end, zone).date()
        return Period('previous', midnight(first - (after - first), zone), span.start)
    return Period('previous', span.start - (span.end - span.start), span.start)


COMPARISON_COLUMNS = [Column('group'), Column('name', null_text='(none)'), Column('current', 'usd'),
                      Column('previous', 'usd'), Column('change', 'usd'),
                      Column('change_percent', 'percent', null_text='new')]


def comparison(conn: Connection, span: Period, zone: ZoneInfo, group_by: str = 'all') -> Report:
    """This range against the one before it: per provider, model and agent, by channel and in total."""
    before = previous_span(span, zone)
    now_days = day_spend(conn, span.start, span.end, zone)
    then_days = day_spend(conn, before.start, before.end, zone)
    then_events, now_events = by_dimension(conn, [before.start, span.start, span.end],
                                           (GROUPS[group] for group in _groups(group_by)))
    now_recorded, then_recorded = _recorded(now_events).cost_micros, _recorded(then_events).cost_micros
    now_total, then_total = sum(d.total for d in now_days), sum(d.total for d in then_days)
    rows: list[dict[str, Any]] = []

    def row(group: str, name: str | None, current: int, previous: int) -> dict[str, Any]:
        return {'group': group, 'name': name, 'current': current, 'previous': previous, 'change': current - previous,
                'change_percent': change_percent(current, previous)}

    for group in _groups(group_by):
        now_items, then_items = now_events[GROUPS[group]], then_events[GROUPS[group]]
        names = set(now_items) | set(then_items)
        pairs = {n: (now_items[n].cost_micros if n in now_items else 0,
                     then_items[n].cost_micros if n in then_items else 0) for n in names}
        for name, (current, previous) in sorted(pairs.items(), key=lambda kv: (-kv[1][0], -kv[1][1], str(kv[0]))):
            rows.append(row(group, name, current, previous))
        extra_now, extra_then = now_total - now_recorded, then_total - then_recorded
        if extra_now > 0 or extra_then > 0:
            rows.append(row(group, UNATTRIBUTED, max(0, extra_now), max(0, extra_then)))
    for channel in CHANNELS:
        rows.append(row('channel', channel, sum(getattr(d, channel) for d in now_days),
                        sum(getattr(d, channel) for d in then_days)))
    rows.append(row('total', 'total', now_total, then_total))
    aligned = is_day_aligned(span, zone) and is_day_aligned(before, zone)
    parameters = span_parameters(span, zone, aligned, group_by=group_by, previous_start=before.start.isoformat(),
                                 previous_end=before.end.isoformat())
    return Report('comparison', f'Spend {describe_span(span, zone)} against {describe_span(before, zone)}', parameters,
                  COMPARISON_COLUMNS, rows,
                  {'current': now_total, 'previous': then_total, 'change': now_total - then_total})


# --- projection -------------------------------------------------------------------------------------------------

PROJECTION_COLUMNS = [Column('period'), Column('start'), Column('end'), Column('spent', 'usd'),
                      Column('limit', 'usd', null_text='no limit'), Column('projected', 'usd'),
                      Column('projected_low', 'usd'), Column('projected_high', 'usd'),
                      Column('projected_percent', 'percent'), Column('eta', null_text='none'), Column('state'),
                      Column('text'), Column('method')]


def projection(conn: Connection, budget: BudgetContext, period: PeriodName | None = None,
               now: datetime | None = None) -> Report:
    """Where the day, week and month are heading (services/insights/forecast.py): spent so far, projected with its
    range, the limit and when it would be reached."""
    zone = budget.zone
    forecast = budget_forecast(conn, budget, now=now)
    rows = []
    for name in (period,) if period else PERIODS:
        f = forecast[name]
        limit = f['limit_micros']
        eta = f['eta']
        rows.append({'period': name, 'start': _local_text(f['start'], zone), 'end': _local_text(f['end'], zone),
                     'spent': f['spent_micros'], 'limit': limit, 'projected': f['projected_micros'],
                     'projected_low': f['projected_low_micros'], 'projected_high': f['projected_high_micros'],
                     'projected_percent': None if not limit else _percent(f['projected_micros'], limit),
                     'eta': _local_text(eta, zone) if eta else None, 'state': f['state'], 'text': f['text'],
                     'method': f['method']})
    at = datetime.fromisoformat(forecast['at'])
    return Report('projection', f'Projection at {local(at, zone):%Y-%m-%d %H:%M} ({zone.key})',
                  {'at': forecast['at'], 'timezone': zone.key, 'period': period or 'all'}, PROJECTION_COLUMNS, rows)


def _local_text(iso: str, zone: ZoneInfo) -> str:
    return f'{datetime.fromisoformat(iso).astimezone(zone):%Y-%m-%d %H:%M}'


# --- building one by name ---------------------------------------------------------------------------------------

# --- efficiency -------------------------------------------------------------------------------------------------

EFFICIENCY_COLUMNS = [Column('name', null_text='(none)'), Column('requests', 'int'), Column('input_tokens', 'int'),
                      Column('output_tokens', 'int'), Column('cache_read_tokens', 'int'),
                      Column('output_per_input', 'ratio'), Column('cache_read_percent', 'percent'),
                      Column('cost', 'usd'), Column('cost_per_1k_output', 'usd'),
                      Column('first_day_per_1k_output', 'usd'), Column('last_day_per_1k_output', 'usd'),
                      Column('per_1k_change_percent', 'percent')]


def efficiency(conn: Connection, span: Period, zone: ZoneInfo, group_by: str = 'agent') -> Report:
    """Per agent or model: output tokens per input token, the cache's share of the input, the cost of 1,000 output
    tokens, and how that cost moved from the first day with output to the last."""
    out = token_efficiency(conn, span, zone, cast(EfficiencyBy, group_by))
    rows = []
    for item in out['items']:
        per_1k = [day['cost_per_1k_output_micros'] for day in item['trend']
                  if day['cost_per_1k_output_micros'] is not None]
        first, last = (per_1k[0], per_1k[-1]) if per_1k else (None, None)
        rows.append({'name': item['name'], 'requests': item['requests'], 'input_tokens': item['input_tokens'],
                     'output_tokens': item['output_tokens'], 'cache_read_tokens': item['cache_read_tokens'],
                     'output_per_input': item['output_per_input'],
                     'cache_read_percent': _percent(item['cache_read_tokens'], item['input_tokens'])
                     if item['input_tokens'] else None,
                     'cost': item['cost_micros'], 'cost_per_1k_output': item['cost_per_1k_output_micros'],
                     'first_day_per_1k_output': first, 'last_day_per_1k_output': last,
                     'per_1k_change_percent': None if first is None or last is None else change_percent(last, first)})
    return Report('efficiency', f'Token efficiency by {group_by}, {describe_span(span, zone)}',
                  span_parameters(span, zone, is_day_aligned(span, zone), group_by=group_by), EFFICIENCY_COLUMNS, rows,
                  {'cost': sum(item['cost_micros'] for item in out['items'])})


def build_report(conn: Connection, budget: BudgetContext, kind: str, period: str | None = None,
                 start: str | None = None, end: str | None = None, group_by: str | None = None,
                 now: datetime | None = None) -> Report:
    """The report of a kind for a named period (default month) or from/to, as the API, the page and the CLI ask."""
    grouping = group_by_for(kind, group_by)
    if period is not None and period not in PERIODS:
        raise ReportError(f'period: must be one of {", ".join(PERIODS)}, got {period!r}')
    if kind == 'projection':
        if start or end:
            raise ReportError('from: the projection report is for the current day, week and month; it takes no '
                              'from/to')
        return projection(conn, budget, period, now)
    try:
        span = resolve_range(period or DEFAULT_PERIOD, start, end, budget.zone, now)
    except ValueError as exc:
        message = str(exc)
        raise ReportError(message if message.startswith(('from:', 'to:')) else f'from/to: {message}') from None
    builders: dict[str, Callable[..., Report]] = {'summary': summary, 'trend': trend, 'comparison': comparison,
                                                  'efficiency': efficiency, 'chargeback': chargeback}
    return builders[kind](conn, span, budget.zone, grouping)
