"""ECharts option builders (plain data in, dict out) for the dashboard's charts, and their thin elements.

`dark` is the page's theme: axis labels, legends and grid lines take its colours (ECharts' own greys are made for a
white page and are dim on a dark one)."""
from __future__ import annotations

from typing import Any

from nicegui import ui

from components import theme
from components.shared import per_snapshot
from services.core.display import FORMAT_USD_JS
from services.core.money import MICROS_PER_USD
from services.dashboard import AgentBar
from services.spend.budget import HistoryPoint
from services.spend.rollups import ProviderSpend


def chart_usd(micros: int) -> float:
    return round(micros / MICROS_PER_USD, 6)  # chart coordinates only; labels come from exact strings


def empty_options(text: str = 'No spend yet today', dark: bool = True) -> dict[str, Any]:
    return {'title': {'text': text, 'left': 'center', 'top': 'middle',
                      'textStyle': {'color': theme.chart_colours(dark).text, 'fontSize': 14, 'fontWeight': 'normal'}},
            'series': []}


@per_snapshot
def agent_bars_options(items: list[AgentBar], dark: bool = True) -> dict[str, Any]:
    """Horizontal bars, largest on top; items come largest first."""
    if not items:
        return empty_options(dark=dark)
    colours = theme.chart_colours(dark)
    ordered = list(reversed(items))
    return {
        'animationDurationUpdate': 0,
        'grid': {'left': 8, 'right': 24, 'top': 8, 'bottom': 8, 'containLabel': True},
        'tooltip': {'trigger': 'axis', 'axisPointer': {'type': 'shadow'}, ':valueFormatter': FORMAT_USD_JS},
        'xAxis': {'type': 'value', **axis_style(colours, '${value}'), 'splitLine': split_line(colours)},
        'yAxis': {'type': 'category', 'data': [i['label'] for i in ordered], **axis_style(colours)},
        'series': [{'type': 'bar', 'data': [chart_usd(i['cost_micros']) for i in ordered],
                    'itemStyle': {'color': theme.GOLD, 'borderRadius': [0, 4, 4, 0]}}],
    }


@per_snapshot
def provider_donut_options(items: list[ProviderSpend], dark: bool = True) -> dict[str, Any]:
    """Share of today's spend per provider; the share is in the name, so narrow screens need no outside labels."""
    if not items:
        return empty_options(dark=dark)
    colours = theme.chart_colours(dark)
    return {
        'animationDurationUpdate': 0,
        'tooltip': {'trigger': 'item', ':valueFormatter': FORMAT_USD_JS},
        'legend': {'bottom': 0, 'type': 'scroll', 'textStyle': {'color': colours.text},
                   'pageTextStyle': {'color': colours.text}, 'pageIconColor': colours.text},
        'color': theme.PALETTE,
        'series': [{'type': 'pie', 'radius': ['45%', '70%'], 'center': ['50%', '45%'], 'label': {'show': False},
                    'data': [{'name': f'{i["provider"] or "unknown"} {i.get("share_percent", 0):.0f}%',
                              'value': chart_usd(i['cost_micros'])} for i in items]}],
    }


@per_snapshot
def history_line_options(points: list[HistoryPoint], daily_limit_micros: int | None,
                         dark: bool = True) -> dict[str, Any]:
    """Daily spend over the last days, with the daily limit as a dashed reference line. Straight segments (a smoothed
    curve overshoots the points: below $0, above the day's spend), drawn once: a live update moves the points
    without replaying the animation. The limit's label sits at the line's start, where today's point (the last)
    never is."""
    colours = theme.chart_colours(dark)
    series: dict[str, Any] = {'type': 'line', 'smooth': False, 'symbolSize': 6, 'name': 'spend',
                              'data': [chart_usd(p['cost_micros']) for p in points],
                              'lineStyle': {'color': theme.GOLD, 'width': 2}, 'itemStyle': {'color': theme.GOLD},
                              'areaStyle': {'color': theme.GOLD, 'opacity': 0.12}}
    if daily_limit_micros is not None:
        series['markLine'] = {'symbol': 'none', 'silent': True,
                              'lineStyle': {'color': theme.CRITICAL, 'type': 'dashed'},
                              'label': {'formatter': 'limit ${c}', 'position': 'insideStartTop',
                                        'color': colours.accent(theme.CRITICAL), 'textBorderWidth': 0},
                              'data': [{'yAxis': chart_usd(daily_limit_micros)}]}
    return {
        'animationDurationUpdate': 0,
        'grid': {'left': 8, 'right': 16, 'top': 24, 'bottom': 8, 'containLabel': True},
        'tooltip': {'trigger': 'axis', ':valueFormatter': FORMAT_USD_JS},
        'xAxis': {'type': 'category', 'boundaryGap': False, 'data': [p['date'][5:] for p in points],
                  **axis_style(colours)},
        'yAxis': {'type': 'value', **axis_style(colours, '${value}'), 'splitLine': split_line(colours),
                  **({':max': f'(v) => Math.ceil(Math.max(v.max, {chart_usd(daily_limit_micros)}) * 1.1)'}
                     if daily_limit_micros is not None else {})},
        'series': [series],
    }


def axis_style(colours: theme.ChartColours, formatter: str | None = None) -> dict[str, Any]:
    label: dict[str, Any] = {'color': colours.text, **({'formatter': formatter} if formatter else {})}
    return {'axisLabel': label, 'axisLine': {'lineStyle': {'color': colours.axis}},
            'axisTick': {'lineStyle': {'color': colours.axis}}}


def split_line(colours: theme.ChartColours) -> dict[str, Any]:
    return {'lineStyle': {'color': colours.grid}}


def chart(options: dict[str, Any], marker: str, height: str = 'h-64') -> ui.echart:
    return ui.echart(options).classes(f'w-full {height}').mark(marker)
