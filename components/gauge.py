"""The gold circular budget gauge: an ECharts option builder (plain data in, dict out) and its element."""
from __future__ import annotations

from typing import Any

from nicegui import ui

from components import theme
from components.shared import per_snapshot
from services.core.display import format_usd, format_usd_all


def gauge_colour(percent: float) -> str:
    if percent >= theme.CRITICAL_PERCENT:
        return theme.CRITICAL
    if percent >= theme.SOFT_PERCENT:
        return theme.WARNING
    return theme.GOLD


@per_snapshot
def gauge_options(spent_micros: int, limit_micros: int | None, dark: bool = True) -> dict[str, Any]:
    """`dark`: the page's theme, for the unfilled track (a dark track on a white page reads as a second segment)
    and the texts."""
    colours = theme.chart_colours(dark)
    percent = 100 * spent_micros / limit_micros if limit_micros else 0.0
    colour = gauge_colour(percent)
    label = ' / '.join(format_usd_all([spent_micros, limit_micros])) if limit_micros else format_usd(spent_micros)
    return {
        'animationDurationUpdate': 0,
        'series': [{
            'type': 'gauge', 'startAngle': 220, 'endAngle': -40, 'min': 0, 'max': 100,
            'progress': {'show': True, 'width': 18, 'itemStyle': {'color': colour}},
            'axisLine': {'lineStyle': {'width': 18, 'color': [[1, colours.track]]}},
            'pointer': {'show': False}, 'axisTick': {'show': False}, 'splitLine': {'show': False},
            'axisLabel': {'show': False},
            'detail': {'valueAnimation': False, 'offsetCenter': [0, '5%'], 'fontSize': 26, 'fontWeight': 'bold',
                       'formatter': f'{percent:.0f}%', 'color': colours.accent(colour)},
            'title': {'offsetCenter': [0, '40%'], 'fontSize': 15, 'color': colours.text},
            'data': [{'value': round(min(percent, 100.0), 1), 'name': label}],
        }],
    }


def budget_gauge(spent_micros: int, limit_micros: int | None, dark: bool = True) -> ui.echart:
    chart = ui.echart(gauge_options(spent_micros, limit_micros, dark)).classes('w-72 h-72').mark('budget-gauge')
    return chart.props('data-testid=budget-gauge')
