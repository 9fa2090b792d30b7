"""ECharts option builders (plain data in, dict out) for the dashboard's charts, and their thin elements."""
from __future__ import annotations

from typing import Any

from nicegui import ui

from components import theme
from services.core.display import FORMAT_USD_JS
from services.core.money import MICROS_PER_USD
from services.dashboard import AgentBar
from services.spend.budget import HistoryPoint
from services.spend.rollups import ProviderSpend


def _usd(micros: int) -> float:
    return round(micros / MICROS_PER_USD, 6)  # chart coordinates only; labels come from exact strings


def empty_options(text: str = 'No spend yet today') -> dict[str, Any]:
    return {'title': {'text': text, 'left': 'center', 'top': 'middle',
                      'textStyle': {'color': theme.TEXT_MUTED, 'fontSize': 14, 'fontWeight': 'normal'}},
            'series': []}


def agent_bars_options(items: list[AgentBar]) -> dict[str, Any]:
    """Horizontal bars, largest on top; items come largest first."""
    if not items:
        return empty_options()
    ordered = list(reversed(items))
    return {
        'grid': {'left': 8, 'right': 24, 'top': 8, 'bottom': 8, 'containLabel': True},
        'tooltip': {'trigger': 'axis', 'axisPointer': {'type': 'shadow'}, ':valueFormatter': _DOLLARS},
        'xAxis': {'type': 'value', 'axisLabel': {'formatter': '${value}'}, 'splitLine': _SPLIT_LINE},
        'yAxis': {'type': 'category', 'data': [i['label'] for i in ordered]},
        'series': [{'type': 'bar', 'data': [_usd(i['cost_micros']) for i in ordered],
                    'itemStyle': {'color': theme.GOLD, 'borderRadius': [0, 4, 4, 0]}}],
    }


def provider_donut_options(items: list[ProviderSpend]) -> dict[str, Any]:
    """Share of today's spend per provider; the share is in the name, so narrow screens need no outside labels."""
    if not items:
        return empty_options()
    return {
        'tooltip': {'trigger': 'item', ':valueFormatter': _DOLLARS},
        'legend': {'bottom': 0, 'type': 'scroll', 'textStyle': {'color': theme.TEXT_MUTED}},
        'color': theme.PALETTE,
        'series': [{'type': 'pie', 'radius': ['45%', '70%'], 'center': ['50%', '45%'], 'label': {'show': False},
                    'data': [{'name': f'{i["provider"] or "unknown"} {i.get("share_percent", 0):.0f}%',
                              'value': _usd(i['cost_micros'])} for i in items]}],
    }


def history_line_options(points: list[HistoryPoint], daily_limit_micros: int | None) -> dict[str, Any]:
    """Daily spend over the last days, with the daily limit as a dashed reference line."""
    series: dict[str, Any] = {'type': 'line', 'smooth': True, 'symbolSize': 6, 'name': 'spend',
                              'data': [_usd(p['cost_micros']) for p in points],
                              'lineStyle': {'color': theme.GOLD, 'width': 2}, 'itemStyle': {'color': theme.GOLD},
                              'areaStyle': {'color': theme.GOLD, 'opacity': 0.12}}
    if daily_limit_micros is not None:
        series['markLine'] = {'symbol': 'none', 'silent': True,
                              'lineStyle': {'color': theme.CRITICAL, 'type': 'dashed'},
                              'label': {'formatter': 'limit ${c}', 'position': 'insideEndTop', 'color': theme.CRITICAL,
                                        'textBorderWidth': 0},
                              'data': [{'yAxis': _usd(daily_limit_micros)}]}
    return {
        'grid': {'left': 8, 'right': 16, 'top': 24, 'bottom': 8, 'containLabel': True},
        'tooltip': {'trigger': 'axis', ':valueFormatter': _DOLLARS},
        'xAxis': {'type': 'category', 'boundaryGap': False, 'data': [p['date'][5:] for p in points]},
        'yAxis': {'type': 'value', 'axisLabel': {'formatter': '${value}'}, 'splitLine': _SPLIT_LINE,
                  **({':max': f'(v) => Math.ceil(Math.max(v.max, {_usd(daily_limit_micros)}) * 1.1)'}
                     if daily_limit_micros is not None else {})},
        'series': [series],
    }


_SPLIT_LINE = {'lineStyle': {'color': 'rgba(128, 128, 128, 0.2)'}}  # readable in light and dark
_DOLLARS = FORMAT_USD_JS


def chart(options: dict[str, Any], marker: str, height: str = 'h-64') -> ui.echart:
    return ui.echart(options).classes(f'w-full {height}').mark(marker)
