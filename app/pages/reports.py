"""Reports page: pick a report, a period or dates and a grouping; see it as a table (the trend also as a chart) and
export it as CSV, Markdown or JSON, the same files the API serves (app/pages/downloads.py serves them to the
logged-in browser session). Below them, the daily digest of a day: its preview, and "Send now" (admins)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from nicegui import run, ui

from app import native, runtime
from app.security.session import can_change, page_actor
from components.digest_card import DigestCard
from components.layout import frame
from components.report_view import report_columns, report_rows, report_table, report_totals_text, trend_chart_options
from services.budget import allocations
from services.core.errors import DomainError, Invalid
from services.insights import report_formats, reports
from services.insights.digest import DigestOut, default_day, parse_day
from services.insights.report_formats import ReportJson

KIND_LABELS = {'summary': 'Summary', 'trend': 'Trend', 'comparison': 'Comparison', 'projection': 'Projection',
               'efficiency': 'Token efficiency', 'chargeback': 'Chargeback'}
PERIOD_LABELS = {'day': 'Today', 'week': 'This week', 'month': 'This month', 'custom': 'From … to …'}
GROUP_LABELS = {'all': 'Provider, model and agent', 'provider': 'Provider', 'model': 'Model', 'agent': 'Agent',
                'day': 'Day', 'week': 'Week', 'project': 'Project', 'user': 'User', 'tag': 'Tag'}
EXPORTS = (('csv', 'CSV'), ('md', 'Markdown'), ('json', 'JSON'))


def _params(state: dict[str, Any]) -> dict[str, str]:
    """The query the API takes for the page's choices (so an export is the API's file)."""
    params: dict[str, str] = {}
    if state['kind'] != 'projection':
        if state['period'] == 'custom':
            params.update({'from': state['from'] or '', 'to': state['to'] or ''})
        else:
            params['period'] = state['period']
        if state['group_by']:
            params['group_by'] = state['group_by']
    return params


def _build(kind: str, params: dict[str, str]) -> reports.Report:
    rt = runtime.current()
    return rt.read(reports.build_report, rt.settings.budget, kind, params.get('period'),
                   params.get('from'), params.get('to'), params.get('group_by'))


def _load(kind: str, params: dict[str, str]) -> ReportJson | str:
    try:
        return report_formats.to_json(_build(kind, params))
    except reports.ReportError as exc:
        return str(exc)


def _save(kind: str, params: dict[str, str], fmt: str) -> str:
    report = _build(kind, params)
    return str(native.save_download(report_formats.render(report, fmt), report_formats.filename(report, fmt)))


def _allocation_groups() -> dict[str, str]:
    """The chargeback's groupings by the shares of each allocation."""
    return {f'{reports.ALLOCATION_GROUP}{a.id}': f'Allocation {a.name}'
            for a in runtime.current().read(allocations.list_allocations)}
def _digest(day: str) -> DigestOut | str:
    rt = runtime.current()
    try:
        return rt.commands.digest.build(parse_day(day or None, datetime.now(UTC), rt.settings.zone))
    except Invalid as exc:
        return str(exc)


async def _load_digest(day: str) -> DigestOut | str | None:
    return await run.io_bound(_digest, day)


async def _send_digest(day: str) -> None:
    """Through the command, as the page's user: a read-only user's click (the button forced on) is refused there."""
    rt = runtime.current()
    try:
        parsed = parse_day(day or None, datetime.now(UTC), rt.settings.zone)
        rows = await run.io_bound(rt.commands.digest.send_now, page_actor(), parsed)
    except DomainError as exc:
        ui.notify(str(exc), type='warning')
        return
    if rows is not None:
        ui.notify(f'Digest of {parsed} sent to {", ".join(r["channel"] for r in rows)}', type='positive')


@ui.page('/reports')
async def reports_page() -> None:
    allocation_groups = await run.io_bound(_allocation_groups)
    if allocation_groups is None:  # the app is stopping
        return
    state: dict[str, Any] = {'kind': 'summary', 'period': reports.DEFAULT_PERIOD, 'from': None, 'to': None,
                             'group_by': reports.DEFAULT_GROUP_BY['summary']}
    current: dict[str, Any] = {}
    with frame('Reports'):
        with ui.row().classes('w-full items-end gap-4'):
            kind = ui.select(KIND_LABELS, value='summary', label='Report').classes('w-40').mark('report-kind')
            period = ui.select(PERIOD_LABELS, value=state['period'], label='Period').classes('w-40') \
                .mark('report-period')
            start = ui.input('From').props('type=date stack-label').classes('w-40').mark('report-from')
            end = ui.input('To (inclusive)').props('type=date stack-label').classes('w-40').mark('report-to')
            group = ui.select(_group_options('summary'), value=state['group_by'], label='Group by') \
                .classes('w-56').mark('report-group-by')
        with ui.row().classes('w-full items-center justify-between'):
            title = ui.label('').classes('text-h6').mark('report-title')
            with ui.row().classes('gap-2'):
                for fmt, label in EXPORTS:
                    ui.button(f'Export {label}', icon='download',
                              on_click=lambda f=fmt: export(f)).props('outline').mark(f'export-{fmt}')
        error = ui.label('').classes('text-negative').mark('report-error')
        chart = ui.echart({}).classes('w-full h-64').mark('report-chart')
        table = report_table()
        totals = ui.label('').classes('text-grey').mark('report-totals')
        DigestCard(default_day(datetime.now(UTC), runtime.current().settings.zone), _load_digest,
                            _send_digest, can_change())

    def sync_controls() -> None:
        is_projection = state['kind'] == 'projection'
        period.set_visibility(not is_projection)
        group.set_visibility(not is_projection)
        custom = state['period'] == 'custom' and not is_projection
        start.set_visibility(custom)
        end.set_visibility(custom)

    async def refresh() -> None:
        sync_controls()
        if state['kind'] != 'projection' and state['period'] == 'custom' and not (state['from'] and state['to']):
            error.set_text('Pick both dates')
            return
        result = await run.io_bound(_load, state['kind'], _params(state))
        if result is None:  # the app is stopping
            return
        if isinstance(result, str):
            error.set_text(result)
            return
        error.set_text('')
        current.clear()
        current.update(result)
        title.set_text(result['title'])
        table.columns = report_columns(result)
        table.rows = report_rows(result)
        table.update()
        is_trend = result['kind'] == 'trend'
        chart.set_visibility(is_trend)
        if is_trend:
            chart.options.clear()
            chart.options.update(trend_chart_options(result))
            chart.update()
        totals.set_text(report_totals_text(result))

    async def on_kind(e: Any) -> None:
        state['kind'] = e.value
        options = _group_options(e.value, allocation_groups)
        state['group_by'] = reports.DEFAULT_GROUP_BY.get(e.value)
        group.set_options(options, value=state['group_by'])
        await refresh()

    async def on_change(name: str, value: Any) -> None:
        if state.get(name) == value:
            return
        state[name] = value or None if name in ('from', 'to') else value
        await refresh()

    async def export(fmt: str) -> None:
        params = _params(state)
        if state['kind'] != 'projection' and state['period'] == 'custom' and not (state['from'] and state['to']):
            ui.notify('Pick both dates first', type='warning')
            return
        if native.active:  # a desktop window cannot download: save the file for the user
            try:
                path = await run.io_bound(_save, state['kind'], params, fmt)
            except reports.ReportError as exc:
                ui.notify(str(exc), type='negative')
                return
            ui.notify(f'Saved {path}', type='positive')
            return
        stem = reports.filename_stem(state['kind'], current.get('parameters', {}))
        name = f'{stem}.{report_formats.EXTENSIONS[fmt]}'
        ui.download(f'/download/reports/{state["kind"]}?{urlencode({**params, "format": fmt})}', name)

    kind.on_value_change(on_kind)
    period.on_value_change(lambda e: on_change('period', e.value))
    start.on_value_change(lambda e: on_change('from', e.value))
    end.on_value_change(lambda e: on_change('to', e.value))
    group.on_value_change(lambda e: on_change('group_by', e.value))
    await refresh()


def _group_options(kind: str, allocation_groups: dict[str, str] | None = None) -> dict[str, str]:
    options = {g: GROUP_LABELS[g] for g in reports.GROUP_BY[kind]}
    return {**options, **(allocation_groups or {})} if kind == 'chargeback' else options
