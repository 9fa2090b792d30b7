"""An agent's detail, opened from its card: its token efficiency per model over the last days (output tokens per
input token, the cache's share of the input, the cost of 1,000 output tokens) and that cost day by day."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from nicegui import ui

from components import theme
from components.charts import FORMAT_USD_JS, axis_style, chart_usd, split_line
from services.core.display import format_usd
from services.insights.efficiency import EfficiencyItem, EfficiencyOut

DETAIL_DAYS = 7
EfficiencyLoader = Callable[[str], Awaitable[EfficiencyOut | None]]  # None: the app is stopping


def ratio_text(item: EfficiencyItem) -> str:
    """`0.25 out per in · 40.0% cached · $0.0400 per 1k out`"""
    parts = ['no input tokens' if item['output_per_input'] is None else f'{item["output_per_input"]:g} out per in']
    if item['cache_read_percent'] is not None:
        parts.append(f'{item["cache_read_percent"]:g}% cached')
    per_1k = item['cost_per_1k_output_micros']
    parts.append('no output tokens' if per_1k is None else f'{format_usd(per_1k)} per 1k out')
    return ' · '.join(parts)


def trend_options(items: list[EfficiencyItem], dark: bool) -> dict[str, Any]:
    """The cost of 1,000 output tokens day by day, a line per model (a day without output has no point)."""
    colours = theme.chart_colours(dark)
    days = sorted({day['day'] for item in items for day in item['trend']})
    series = []
    for item in items:
        by_day = {day['day']: day['cost_per_1k_output_micros'] for day in item['trend']}
        points = [by_day.get(day) for day in days]
        series.append({'type': 'line', 'name': item['name'] or '(no model)', 'connectNulls': True,
                       'data': [None if micros is None else chart_usd(micros) for micros in points]})
    return {'animation': False, 'grid': {'left': 8, 'right': 16, 'top': 32, 'bottom': 8, 'containLabel': True},
            'legend': {'type': 'scroll', 'textStyle': {'color': colours.text}},
            'tooltip': {'trigger': 'axis', ':valueFormatter': FORMAT_USD_JS},
            'xAxis': {'type': 'category', 'data': [day[5:] for day in days], **axis_style(colours)},
            'yAxis': {'type': 'value', **axis_style(colours, '${value}'), 'splitLine': split_line(colours)},
            'series': series}


class AgentDetailDialog:
    """One per page; `show(agent_id)` reads the agent's efficiency through `load` (off the event loop) and opens."""

    def __init__(self, load: EfficiencyLoader, dark: Callable[[], bool]) -> None:
        self.load = load
        self.dark = dark
        with ui.dialog().mark('agent-detail') as self.dialog, \
                ui.card().classes('w-full max-w-[720px] gap-2'):
            self.title = ui.label().classes('text-h6').mark('agent-detail-title')
            ui.label(f'Token efficiency, last {DETAIL_DAYS} days, by model').classes('text-overline text-grey')
            self.body = ui.column().classes('w-full gap-2').mark('agent-detail-body')
            with ui.row().classes('w-full justify-between'):
                self.calls = ui.link('Calls in the usage explorer').mark('agent-detail-calls')
                ui.button('Close', on_click=self.dialog.close).props('flat').mark('agent-detail-close')

    async def show(self, agent_id: str) -> None:
        self.title.set_text(agent_id)
        self.calls.props(f'href=/usage?agent_id={quote(agent_id, safe="")}')
        self.body.clear()
        with self.body:
            ui.spinner()
        self.dialog.open()
        out = await self.load(agent_id)
        if out is None:
            return
        self.body.clear()
        with self.body:
            if not out['items']:
                ui.label(f'No calls in the last {DETAIL_DAYS} days').classes('text-grey').mark('agent-detail-empty')
                return
            for item in out['items']:
                with ui.column().classes('w-full gap-0').mark('agent-detail-model'):
                    with ui.row().classes('w-full justify-between no-wrap gap-2'):
                        ui.label(item['name'] or '(no model)').classes('font-medium ellipsis min-w-0')
                        ui.label(f'{item["requests"]:,} calls · {format_usd(item["cost_micros"])}') \
                            .classes('text-body2 whitespace-nowrap')
                    ui.label(ratio_text(item)).classes('text-caption opacity-80').mark('agent-detail-ratios')
            ui.echart(trend_options(out['items'], self.dark())).classes('w-full h-56').mark('agent-detail-trend')
