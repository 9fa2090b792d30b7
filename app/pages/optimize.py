"""Optimise page: each agent's calls (and each of its models') re-priced on the same provider's cheaper models and
on the configured substitutes, for today, this week or this month, or one agent; the same read as
GET /api/v1/optimize and `spendgauge optimize`. About cost only, and it says so."""
from __future__ import annotations

from typing import Any

from nicegui import run, ui

from app import runtime
from app.pages.live_refresh import ThrottledRefresh
from components.layout import frame
from components.optimize_view import optimize_rows, optimize_table
from services.core.display import plural
from services.dashboard import Part
from services.insights.optimize import OptimizeOut, optimize
from services.insights.optimize_table import table_rows
from services.spend import budget

PERIOD_LABELS = {'day': 'Today', 'week': 'This week', 'month': 'This month'}
LIVE_REFRESH_S = 15.0  # new calls re-read the page at most this often (a read takes up to ~100 ms at 5M events)


def _load(period: str, agent_id: str | None) -> OptimizeOut:
    rt = runtime.current()
    span = budget.resolve_range(period, None, None, rt.settings.zone)
    return rt.read(optimize, rt.pricer, span, rt.settings.zone, rt.settings.substitutes, agent_id)


@ui.page('/optimize')
async def optimize_page() -> None:
    state: dict[str, Any] = {'period': 'week', 'agent': None}
    with frame('Optimise'):
        with ui.row().classes('w-full items-end gap-4'):
            period = ui.select(PERIOD_LABELS, value=state['period'], label='Period').classes('w-40') \
                .mark('optimize-period')
            agent = ui.input('Agent (all when empty)').props('clearable').classes('w-56').mark('optimize-agent')
        ui.label('').classes('text-body2 text-weight-medium').mark('optimize-note').bind_text_from(state, 'note')
        table = optimize_table()
        ui.label('').classes('text-grey text-caption').mark('optimize-sample').bind_text_from(state, 'sample')
        ui.label('').classes('text-grey text-caption').mark('optimize-excluded').bind_text_from(state, 'excluded')

    async def refresh() -> None:
        out = await run.io_bound(_load, state['period'], state['agent'])
        if out is None:  # the app is stopping
            return
        table.rows = optimize_rows(table_rows(out))
        table.update()
        sample = out['sample']
        state['note'] = out['note']
        state['sample'] = (f'Context-window fit from the newest {plural(sample["calls"], "call")} of the period'
                           + ('' if sample['complete'] else f' (at most {sample["limit"]:,})') + '. '
                           + out['method'])
        excluded = out['excluded']
        state['excluded'] = '' if not excluded else \
            f'Not re-priced ({len(excluded)}): ' + ', '.join(f'{e["provider"]}/{e["model"]} ({e["reason"]})'
                                                           for e in excluded[:8]) + (', …' if len(excluded) > 8 else '')

    async def on_change(name: str, value: Any) -> None:
        value = (value or '').strip() or None if name == 'agent' else value
        if state.get(name) != value:
            state[name] = value
            await refresh()

    state.update(note='', sample='', excluded='')
    period.on_value_change(lambda e: on_change('period', e.value))
    agent.on('change', lambda e: on_change('agent', agent.value))
    agent.on('clear', lambda e: on_change('agent', None))
    await refresh()
    ThrottledRefresh(refresh, LIVE_REFRESH_S).follow({Part.TODAY})  # every period holds today
