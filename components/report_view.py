"""A report (`ReportJson`, services/insights/report_formats.to_json) as a table (a card per row on a phone), and the
trend as a chart."""
from __future__ import annotations

from typing import Any

from nicegui import ui

from components import theme
from components.cards import short_usd
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
        <template v-if="col.align === 'left'"><span class="text-caption text-grey">{{ col.label }}</span>
          <span>{{ col.value }}</span></template>
        <template v-else><div class="text-caption text-grey">{{ col.label }}</div><div>{{ col.value }}</div></template>
      </div>
    </q-card-section>
  </q-card>
</div>"""


def report_columns(report: ReportJson) -> list[dict[str, Any]]:
    return [{'name': c['name'], 'label': LABELS.get(c['name'], c['name']), 'field': c['name'],
             'align': 'left' if c['type'] == 'text' else 'right'} for c in report['columns']]


def report_rows(report: ReportJson) -> list[dict[str, Any]]:
    """Display strings: short dollars, thousands separators, percent signs; `_key` keeps rows apart for the table."""
    rows = []
    for index, item in enumerate(report['rows']):
        row: dict[str, Any] = {'_key': index}
        for c in report['columns']:
            name, kind = c['name'], c['type']
            value = item[f'{name}_micros'] if kind == 'usd' else item[name]
            if value is None:
                row[name] = c.get('null_text') or ''
            elif kind == 'usd':
                row[name] = short_usd(_micros(value))
            elif kind == 'int':
                row[name] = f'{value:,}'
            elif kind == 'percent':
                row[name] = f'{value:.2f}%'
            else:
                row[name] = str(value)
        rows.append(row)
    return rows


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
        'tooltip': {'trigger': 'axis', ':valueFormatter': '(value) => "$" + Number(value).toFixed(4)'},
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
