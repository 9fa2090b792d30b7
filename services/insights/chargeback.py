"""The chargeback report: who consumed what share of the bill, for a period or from/to.

The bill is the reconciled total of the range (services/spend/reconciliation.py, as the summary report's). Its lines:

- grouped by project, user, agent, provider or model: one line per value (from the rollups, so pruned events still
  count) and `(none)` for the calls that named no value;
- grouped by tag, or by the shares of an allocation (`allocation:<id>`): one line per tag or share, from the events.
  A call that falls under several lines (two tags; a project share and a tag share) is split evenly between them,
  in whole micro-USD: the remainder goes to the first lines (tags in alphabetical order, shares in the allocation's
  order). Calls under no share are "Outside the shares"; spend whose events were pruned (retention) is its own line;
- "Unattributed (billed, no events)": reconciled billed spend that no recorded call explains.

The lines add up exactly to the bill (integer micro-USD); their percentages of the bill add up to 100.00.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Text, cast, func, select

from services.budget.allocations import AllocationRule, get_allocation
from services.core.display import apportion
from services.core.periods import Period
from services.core.tables import EVENTS
from services.insights.report_days import day_spend, describe_span, is_day_aligned, span_parameters
from services.insights.report_model import ALLOCATION_GROUP, Column, Report
from services.spend.rollups import scope_spend, totals_between

NO_VALUE = '(none)'
OUTSIDE = 'Outside the shares'
PRUNED = 'Recorded, events pruned (not attributable)'
UNATTRIBUTED = 'Unattributed (billed, no events)'
TOTAL = 'Total (the bill)'
ROLLUP_COLUMNS = {'agent': 'agent_id', 'provider': 'provider', 'model': 'model'}
EVENT_COLUMNS = {'agent': 'agent_id', 'user': 'user_id', 'project': 'project', 'provider': 'provider',
                 'model': 'model', 'tag': 'tags'}
COLUMNS = [Column('line'), Column('scope'), Column('value'), Column('limit', 'usd', null_text=''),
           Column('cost', 'usd'), Column('share_percent', 'percent')]
Line = tuple[str, str, str, int | None, int]  # (line, scope, value, limit, cost)


def chargeback(conn: Connection, span: Period, zone: ZoneInfo, group_by: str) -> Report:
    bill = sum(day.total for day in day_spend(conn, span.start, span.end, zone))
    recorded = totals_between(conn, [span.start, span.end]).total(0).cost_micros
    allocation: AllocationRule | None = None
    if group_by.startswith(ALLOCATION_GROUP):
        allocation = get_allocation(conn, int(group_by.removeprefix(ALLOCATION_GROUP)))
        lines = _by_shares(conn, span, allocation)
    elif group_by == 'tag':
        lines = _by_tag(conn, span)
    else:
        lines = _by_value(conn, span, group_by, recorded)
    attributed = sum(line[4] for line in lines)
    if attributed < recorded:  # the events of part of the range were pruned: their rollups still count
        lines.append((PRUNED, '', '', None, recorded - attributed))
    if bill != recorded:
        lines.append((UNATTRIBUTED, '', '', None, bill - recorded))
    percents = _percents([line[4] for line in lines])
    rows: list[dict[str, Any]] = [
        {'line': name, 'scope': scope, 'value': value, 'limit': limit, 'cost': cost, 'share_percent': percent}
        for (name, scope, value, limit, cost), percent in zip(lines, percents, strict=True)]
    rows.append({'line': TOTAL, 'scope': 'total', 'value': '', 'limit': allocation.limit_micros if allocation else None,
                 'cost': bill, 'share_percent': Decimal('100.00') if bill else Decimal('0.00')})
    what = f'allocation {allocation.name}' if allocation else group_by
    parameters = span_parameters(span, zone, is_day_aligned(span, zone), group_by=group_by,
                                 allocation=allocation.name if allocation else None)
    return Report('chargeback', f'Chargeback by {what}, {describe_span(span, zone)}', parameters, COLUMNS, rows,
                  {'bill': bill, 'recorded': recorded, 'unattributed': bill - recorded})


def _percents(costs: list[int]) -> list[Decimal]:
    """Each cost's share of their sum in hundredths of a percent, adding up to 100.00 (largest remainder)."""
    total = sum(costs)
    if total <= 0 or any(c < 0 for c in costs):
        return [(Decimal(100 * c) / total).quantize(Decimal('0.01')) if total > 0 else Decimal('0.00') for c in costs]
    return [Decimal(h // total).scaleb(-2) for h in apportion([c * 10_000 for c in costs], total)]


def _by_value(conn: Connection, span: Period, scope: str, recorded: int) -> list[Line]:
    """One line per value of a project, user, agent, provider or model, from the rollups; `(none)` for the rest."""
    if scope in ROLLUP_COLUMNS:
        group = totals_between(conn, [span.start, span.end], (ROLLUP_COLUMNS[scope],)).groups[0]
        spent = {key[0]: totals.cost_micros for key, totals in group.items() if key[0]}
    else:
        spent = scope_spend(conn, scope, span.start, span.end)
    lines: list[Line] = [(f'{scope}={value}', scope, value, None, cost)
                         for value, cost in sorted(spent.items(), key=lambda kv: (-kv[1], kv[0])) if cost]
    rest = recorded - sum(spent.values())
    if rest:
        lines.append((NO_VALUE, scope, '', None, rest))
    return lines


def _split(cost: int, parts: int) -> list[int]:
    """`cost` in `parts` whole micro-USD that add up to it; the first ones take the remainder."""
    if not parts:
        return []
    base, extra = divmod(cost, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _calls(conn: Connection, span: Period, scopes: Iterable[str]) -> Iterable[tuple[dict[str, Any], int]]:
    """The events of the range grouped by the values of `scopes` (one row per combination met, summed in SQL)."""
    names = sorted(set(scopes))
    columns = [cast(EVENTS.c.tags, Text).label('tags') if s == 'tag' else EVENTS.c[EVENT_COLUMNS[s]].label(s)
               for s in names]
    query = (select(*columns, func.sum(EVENTS.c.cost_micros))
             .where(EVENTS.c.ts >= span.start, EVENTS.c.ts < span.end).group_by(*columns))
    for row in conn.execute(query):
        values = dict(zip(names, row[:-1], strict=True))
        if 'tag' in values:
            values['tag'] = sorted(set(json.loads(values['tag'] or '[]')) - {''})
        yield values, int(row[-1] or 0)


def _by_tag(conn: Connection, span: Period) -> list[Line]:
    spent: dict[str, int] = {}
    untagged = 0
    for values, cost in _calls(conn, span, ['tag']):
        tags = values['tag']
        if not tags:
            untagged += cost
        for tag, part in zip(tags, _split(cost, len(tags)), strict=True):
            spent[tag] = spent.get(tag, 0) + part
    lines: list[Line] = [(f'tag={tag}', 'tag', tag, None, cost)
                         for tag, cost in sorted(spent.items(), key=lambda kv: (-kv[1], kv[0]))]
    if untagged:
        lines.append((NO_VALUE, 'tag', '', None, untagged))
    return lines


def _by_shares(conn: Connection, span: Period, allocation: AllocationRule) -> list[Line]:
    shares = allocation.shares
    spent = [0] * len(shares)
    outside = 0
    for values, cost in _calls(conn, span, {s.scope for s in shares}):
        matched = [i for i, s in enumerate(shares)
                   if (s.scope_value in values['tag'] if s.scope == 'tag' else values[s.scope] == s.scope_value)]
        if not matched:
            outside += cost
        for index, part in zip(matched, _split(cost, len(matched)), strict=True):
            spent[index] += part
    lines: list[Line] = [(s.label, s.scope, s.scope_value, s.limit_micros, cost)
                         for s, cost in zip(shares, spent, strict=True)]
    lines.append((OUTSIDE, '', '', None, outside))
    return lines
