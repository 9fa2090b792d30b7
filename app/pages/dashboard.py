"""The dashboard at `/`: today's spend against the daily limit."""
from __future__ import annotations

from nicegui import run, ui

from app import runtime
from components.gauge import budget_gauge
from services import budget
from services.money import format_usd


def _load_summary() -> dict:
    rt = runtime.current()
    with rt.engine.connect() as conn:
        return budget.period_summary(conn, 'day', rt.settings.zone, rt.settings.daily_limit_micros)


@ui.page('/')
async def dashboard() -> None:
    ui.page_title('SpendGauge')
    with ui.header().classes('items-center'):
        ui.label('SpendGauge').classes('text-h6')
    summary = await run.io_bound(_load_summary)
    channels = summary['by_channel']
    with ui.column().classes('items-center w-full'):
        budget_gauge(summary['spent_micros'], summary['limit_micros'])
        ui.label(f'resets in {summary["resets_in"]}').mark('resets-in')
        litellm, direct = channels['litellm']['spent_micros'], channels['direct']['spent_micros']
        ui.label(f'Via LiteLLM: {format_usd(litellm)} | Direct: {format_usd(direct)} | '
                 f'Total: {format_usd(summary["spent_micros"])}').mark('channel-strip')
        if summary['requests'] == 0:
            ui.label('No spend yet today').classes('text-grey')
