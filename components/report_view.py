"""A report (`ReportJson`, services/insights/report_formats.to_json) as a table (a card per row on a phone), and the
trend as a chart."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from nicegui import ui

from components import theme
from services.core.display import FORMAT_USD_JS, apportion, format_shares, format_usd, usd_places
from services.core.money import MICROS_PER_USD
from services.insights.report_formats import Cell, ReportJson

LABELS = {'group': 'Group', 'name': 'Name', 'requests': 'Requests', 'input_tokens': 'Input tokens',
          'output_tokens': 'Output tokens', 'cost': 'Cost', 'share_percent': 'Share', 'day': 'Day',
          'week': 'Week of', 'recorded': 'Recorded', 'litellm': 'Via LiteLLM', 'direct': 'Direct', 'total': 'Total',
          'current': 'This period', 'previous': 'Previous', 'change': 'Change', 'change_percent': 'Change %',
          'period': 'Period', 'start': 'Start', 'end': 'End', 'spent': 'Spent', 'limit': 'Limit',
          'projected': 'Projected', 'projected_low': 'Low', 'projected_high': 'High',
          'projected_percent': 'Of limit', 'eta': 'Reaches the limit', 'state': 'State', 'text': 'Forecast',
          'method': 'Method'}

# A card per row on a phone: text columns on a line each, numbers three to a line, every one with its label.
CARD_SLOT = r"""<div class="col-12 q-pb-sm">
  <q-card flat bordered>
    <q-card-section class="row q-py-sm q-px-md">
      <div v-for="col in props.cols" :key="col.name" :class="col.align === 'left' ? 'col-12' : 'col-4 q-pt-xs'">
        <template v-if="col.align === 'left'"><span class="text-caption text-grey q-mr-sm">{{ col.label }}</span>
          <span>{{ col.value }}</span></template>
        <template v-else><div class="text-caption text-grey">{{ col.label }}</div><div>{{ col.value }}</div></template>
      </div>
    </q-card-section>
  </q-card>
</div>"""


def report_columns(report: ReportJson) -> list[dict[str, Any]]:
    return [{'name': c['name'], 'label': LABELS.get(c['name'], c['name']), 'field': c['name'],
             'align': 'left' if c['type'] == 'text' else 'right'} for c in report['columns']]


# Amounts that are a sum or a difference of others in a row or the totals: shown, they are computed from the shown
# parts, so "Via LiteLLM + Direct = Total" and "This period - Previous = Change" hold on screen too.
SUMS = (('total', ('litellm', 'direct')), ('total', ('recorded', 'unattributed')))
DIFFERENCES = (('change', 'current', 'previous'),)


def shown_money(report: ReportJson) -> tuple[list[dict[str, int]], dict[str, int], int]:
    """The micro-USD amounts of the rows and the totals as displayed, and their places (services/core/display.py).

    One table, one number of places. A group's rows (summary, comparison) add up to the total row, a trend's rows to
    the totals, and a row's parts to its sum, all as displayed.
    """
    names = [c['name'] for c in report['columns'] if c['type'] == 'usd']
    rows = [{n: _micros(r[f'{n}_micros']) for n in names if r[f'{n}_micros'] is not None} for r in report['rows']]
    totals = {k.removesuffix('_micros'): int(v) for k, v in report['totals'].items() if k.endswith('_micros')}
    places = usd_places(*(v for r in rows for v in r.values()), *totals.values())
    unit = 10 ** (6 - places)
    shown = [{n: apportion([v], unit)[0] for n, v in r.items()} for r in rows]
    derived = {total for total, parts in SUMS if set(parts) <= set(names)} | {d[0] for d in DIFFERENCES}
    groups = [r.get('group') for r in report['rows']]
    for name in (n for n in names if n not in derived):
        if 'total' in groups:  # each group adds up to the total row
            total_row = groups.index('total')
            for group in dict.fromkeys(g for g in groups if g != 'total'):
                members = [i for i, g in enumerate(groups) if g == group and name in rows[i]]
                values = [rows[i][name] for i in members]
                if sum(values) == rows[total_row].get(name):
                    for i, value in zip(members, apportion(values, unit), strict=True):
                        shown[i][name] = value
        elif name in totals and sum(r.get(name, 0) for r in rows) == totals[name]:  # the rows add up to the totals
            for i, value in enumerate(apportion([r.get(name, 0) for r in rows], unit)):
                if name in rows[i]:
                    shown[i][name] = value
    for exact, displayed in zip(rows, shown, strict=True):
        _derive(exact, displayed)
    if 'total' in groups or not rows:
        shown_totals = {k: apportion([v], unit)[0] for k, v in totals.items()}
        for total, parts in SUMS:
            if set(parts) <= set(totals) and sum(totals[p] for p in parts) == totals.get(total):
                shown_totals.update(zip(parts, apportion([totals[p] for p in parts], unit), strict=True))
    else:
        shown_totals = {k: sum(s.get(k, 0) for s in shown) for k in totals}
    _derive(totals, shown_totals)
    return shown, shown_totals, places


def _derive(exact: dict[str, int], shown: dict[str, int]) -> None:
    """Sums and differences from their shown parts, where they hold exactly."""
    for total, parts in SUMS:
        if total in exact and set(parts) <= set(exact) and sum(exact[p] for p in parts) == exact[total]:
            shown[total] = sum(shown[p] for p in parts)
    for difference, a, b in DIFFERENCES:
        if {difference, a, b} <= set(exact) and exact[a] - exact[b] == exact[difference]:
            shown[difference] = shown[a] - shown[b]


def report_rows(report: ReportJson) -> list[dict[str, Any]]:
    """Display strings: dollars (services/core/display.py), thousands separators, percent signs; `_key` keeps rows
    apart for the table. A group's shares add up to 100.00%."""
    money, _, places = shown_money(report)
    shares = _shares(report)
    rows = []
    for index, item in enumerate(report['rows']):
        row: dict[str, Any] = {'_key': index}
        for c in report['columns']:
            name, kind = c['name'], c['type']
            value = item[f'{name}_micros'] if kind == 'usd' else item[name]
            if value is None:
                row[name] = c.get('null_text') or ''
            elif kind == 'usd':
                row[name] = format_usd(money[index][name], places)
            elif kind == 'int':
                row[name] = f'{value:,}'
            elif kind == 'percent':
                row[name] = shares.get(index) or f'{Decimal(str(value)):.2f}%'
            else:
                row[name] = str(value)
        rows.append(row)
    return rows


def report_totals_text(report: ReportJson) -> str:
    """`total: $3.19 · litellm: $1.94 · direct: $1.25 ...`, adding up like the table."""
    _, totals, places = shown_money(report)
    return ' · '.join(f'{name}: {format_usd(value, places)}' for name, value in totals.items())


def _shares(report: ReportJson) -> dict[int, str]:
    """The summary's shares of the total per group, adding up to 100.00% as displayed, by row index."""
    rows = report['rows']
    if not any(c['name'] == 'share_percent' for c in report['columns']) or not rows:
        return {}
    groups = [r.get('group') for r in rows]
    if 'total' not in groups:
        return {}
    total = rows[groups.index('total')]['cost_micros']
    shares: dict[int, str] = {}
    for group in dict.fromkeys(groups):
        members = [i for i, g in enumerate(groups) if g == group]
        costs = [_micros(rows[i]['cost_micros']) for i in members]
        if sum(costs) == total:
            shares.update(zip(members, format_shares(costs), strict=True))
    return shares


def trend_chart_options(report: ReportJson) -> dict[str, Any]:
    """Stacked bars of via LiteLLM and direct per day or week (the reconciled total), with the events as a line."""
    interval = report['columns'][0]['name']
    rows = report['rows']
    days = [str(r[interval]) for r in rows]  # ISO dates: the day, or the week's first day

    def series(name: str, field: str, color: str, kind: str = 'bar') -> dict[str, Any]:
        data = [round(_micros(r[f'{field}_micros']) / MICROS_PER_USD, 6) for r in rows]
        item: dict[str, Any] = {'name': name, 'type': kind, 'data': data, 'itemStyle': {'color': color}}
        if kind == 'bar':
            item['stack'] = 'spend'
        else:
            item.update(symbolSize=5, lineStyle={'color': color, 'width': 1, 'type': 'dashed'})
        return item

    return {
        'grid': {'left': 8, 'right': 16, 'top': 32, 'bottom': 8, 'containLabel': True},
        'tooltip': {'trigger': 'axis', ':valueFormatter': FORMAT_USD_JS},
        'legend': {'top': 0, 'textStyle': {'color': theme.TEXT_MUTED}},
        'xAxis': {'type': 'category', 'data': [d[5:] if interval == 'day' else d for d in days]},
        'yAxis': {'type': 'value', 'axisLabel': {'formatter': '${value}'},
                  'splitLine': {'lineStyle': {'color': 'rgba(128, 128, 128, 0.2)'}}},
        'series': [series('Via LiteLLM', 'litellm', theme.PALETTE[1]), series('Direct', 'direct', theme.GOLD),
                   series('Recorded', 'recorded', theme.TEXT_MUTED, 'line')],
    }


def _micros(cell: Cell) -> int:
    assert isinstance(cell, int), cell  # a usd column's `<name>_micros`, never null where this reads it
    return cell


def report_table() -> ui.table:
    """Empty: the page sets the columns and rows of the report it shows."""
    table = ui.table(columns=[], rows=[], row_key='_key') \
        .props('flat bordered dense wrap-cells :grid="Quasar.Screen.lt.sm"')  # cards below 600 px
    table.add_slot('item', CARD_SLOT)
    return table.classes('w-full').mark('report-table')
