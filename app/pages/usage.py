"""The usage explorer at `/usage`: every recorded call, filtered, newest or dearest first, a page at a time (the
listing's keyset, so a deep page costs what the first does); a row opens the event; the filtered set downloads as CSV
or JSON lines. The first page follows new calls live."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from nicegui import background_tasks, run, ui

from app import native, runtime
from app.feed import feed
from components.layout import frame
from components.sessions_table import local_time
from components.usage_table import event_details, usage_rows, usage_table
from services.core.errors import Invalid
from services.core.periods import local_midnight
from services.dashboard import Part
from services.usage.ledger import EventOut
from services.usage.queries import UsagePage, UsageQuery, export_usage, list_usage

PAGE = 50
MAX_TEXT = 200  # the longest id a filter can match
TEXT_FILTERS = (('agent_id', 'Agent'), ('session_id', 'Session'), ('task_id', 'Task'), ('user_id', 'User'),
                ('project', 'Project'), ('tag', 'Tag'), ('provider', 'Provider'), ('model', 'Model'))
CHANNELS = {'': 'Any channel', 'litellm': 'Via LiteLLM', 'direct': 'Direct'}
COST_SOURCES = {'': 'Any', 'priced': 'Priced', 'reported': 'Reported', 'unpriced': 'Unpriced'}
SORTS = {'time': 'Newest first', 'cost': 'Dearest first'}
EXPORTS = (('csv', 'CSV'), ('jsonl', 'JSON lines'))


@ui.page('/usage')
async def usage_page(request: Request) -> None:
    """`/usage?agent_id=coder` opens with that filter filled in (any of TEXT_FILTERS)."""
    with frame('Usage'):
        explorer = UsageExplorer(runtime.current().settings.zone, request.query_params)
    await explorer.load()
    unsubscribe = feed().subscribe(lambda _: explorer.new_calls(), parts={Part.TODAY})
    ui.context.client.on_delete(unsubscribe)


class UsageExplorer:
    def __init__(self, zone: ZoneInfo, prefill: Mapping[str, str] | None = None) -> None:
        self.zone = zone
        self.cursors: list[str | None] = [None]  # the cursor of each page on the way here: the last is this page's
        self.next_cursor: str | None = None
        self.items: dict[int, EventOut] = {}
        self.loading = False
        with ui.element('div').classes('grid grid-cols-2 md:grid-cols-4 lg:grid-cols-6 gap-2 w-full'):
            self.start = ui.input('From').props('type=date stack-label dense').mark('usage-from')
            self.end = ui.input('To (inclusive)').props('type=date stack-label dense').mark('usage-to')
            self.texts = {name: ui.input(label, value=(prefill or {}).get(name, '')[:MAX_TEXT])
                          .props('dense clearable').mark(f'usage-{name}') for name, label in TEXT_FILTERS}
            self.channel = ui.select(CHANNELS, value='', label='Channel').props('dense').mark('usage-channel')
            self.cost_source = ui.select(COST_SOURCES, value='', label='Cost source').props('dense') \
                .mark('usage-cost_source')
            self.sort = ui.select(SORTS, value='cost' if (prefill or {}).get('sort') == 'cost' else 'time',
                                  label='Sort').props('dense').mark('usage-sort')
        with ui.row().classes('w-full items-center justify-between'):
            with ui.row().classes('gap-2'):
                ui.button('Apply', icon='filter_alt', on_click=self.apply).mark('usage-apply')
                ui.button('Clear', on_click=self.clear).props('flat').mark('usage-clear')
            with ui.row().classes('gap-2'):
                for kind, label in EXPORTS:
                    ui.button(f'Export {label}', icon='download', on_click=lambda k=kind: self.export(k)) \
                        .props('outline').mark(f'usage-export-{kind}')
        self.error = ui.label().classes('text-negative').mark('usage-error')
        self.table = usage_table(self.open_event)
        with ui.row().classes('w-full items-center justify-between no-wrap'):
            self.newer = ui.button('Newer', icon='chevron_left', on_click=self.newer_page).props('flat') \
                .mark('usage-newer')
            self.where = ui.label().classes('text-caption text-grey text-center').mark('usage-page')
            self.older = ui.button('Older', icon='chevron_right', on_click=self.older_page).props('flat') \
                .mark('usage-older')
        with ui.dialog() as self.dialog, ui.card().classes('min-w-[320px] max-w-[640px] w-full'):
            self.details = ui.column().classes('w-full gap-1').mark('usage-event')
            ui.button('Close', on_click=self.dialog.close).props('flat')
        self.query = self._query()

    async def apply(self) -> None:
        try:
            self.query = self._query()
        except Invalid as exc:
            self.error.set_text(str(exc))
            return
        self.cursors = [None]
        await self.load()

    async def clear(self) -> None:
        for element in (self.start, self.end, *self.texts.values()):
            element.value = ''
        self.channel.value = self.cost_source.value = ''
        self.sort.value = 'time'
        await self.apply()

    async def older_page(self) -> None:
        if self.next_cursor:
            self.cursors.append(self.next_cursor)
            await self.load()

    async def newer_page(self) -> None:
        if len(self.cursors) > 1:
            self.cursors.pop()
            await self.load()

    def new_calls(self) -> None:
        """New spend was recorded: the first page shows it (a deeper page stays where the reader is)."""
        if len(self.cursors) == 1 and not self.loading:
            background_tasks.create(self.load(), name='usage explorer reload')

    async def load(self) -> None:
        self.loading = True
        try:
            page = await run.io_bound(_read, replace(self.query, cursor=self.cursors[-1]))
        finally:
            self.loading = False
        if page is None:  # the app is stopping
            return
        if isinstance(page, str):
            self.error.set_text(page)
            return
        self.error.set_text('')
        self.items = {item['id']: item for item in page['items']}
        self.next_cursor = page['next_cursor']
        self.table.rows = usage_rows(page['items'], self.zone)
        self.table.update()
        self.newer.set_enabled(len(self.cursors) > 1)
        self.older.set_enabled(self.next_cursor is not None)
        where = f'Page {len(self.cursors)} · {page["count"]} events, {SORTS[self.query.sort].lower()}'
        if page['searched_to'] and self.query.sort == 'cost':
            where += f' · ranks the calls back to {local_time(page["searched_to"], self.zone)}: set To earlier for ' \
                     'older ones'
        elif page['searched_to']:
            where += f' · searched back to {local_time(page["searched_to"], self.zone)}: Older searches on'
        if page['pruned_before']:
            where += f' · events before {page["pruned_before"][:10]} were pruned (their totals stay)'
        self.where.set_text(where)

    def open_event(self, event_id: int) -> None:
        item = self.items.get(event_id)
        if item is None:
            return
        self.details.clear()
        with self.details:
            ui.label(f'{item["provider"]}/{item["model"]}').classes('text-h6')
            for label, value in event_details(item, self.zone):
                with ui.row().classes('w-full no-wrap gap-2 items-start'):
                    ui.label(label).classes('text-grey w-36 shrink-0')
                    ui.label(value).classes('whitespace-pre-wrap break-all')
        self.dialog.open()

    async def export(self, kind: str) -> None:
        try:
            query = self._query()
        except Invalid as exc:
            ui.notify(str(exc), type='warning')
            return
        if native.active:  # a desktop window cannot download: save the file for the user
            path = await run.io_bound(_save, query, kind)
            ui.notify(f'Saved {path}', type='positive')
            return
        ui.download(f'/download/usage.{kind}?{urlencode(_params(query))}', f'usage.{kind}')

    def _query(self) -> UsageQuery:
        """The filters as typed: dates are local days of the server's zone, the end inclusive."""
        texts = {name: (element.value or '').strip() or None for name, element in self.texts.items()}
        start, end = _day(self.start.value, 'from'), _day(self.end.value, 'to')
        if start and end and end < start:
            raise Invalid('to: the last day comes before the first')
        return UsageQuery(start=local_midnight(start, self.zone) if start else None,
                          end=local_midnight(end + timedelta(days=1), self.zone) if end else None,
                          channel=self.channel.value or None, cost_source=self.cost_source.value or None,
                          limit=PAGE, sort=self.sort.value, **texts)


def _day(value: Any, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise Invalid(f'{name}: not a date (YYYY-MM-DD)') from None


def _read(query: UsageQuery) -> UsagePage | str:
    try:
        return runtime.current().read(list_usage, query)
    except Invalid as exc:
        return str(exc)


def _params(query: UsageQuery) -> dict[str, str]:
    """The query string /download/usage.* (and GET /api/v1/usage/export) take for these filters."""
    params = {name: value for name in (*(n for n, _ in TEXT_FILTERS), 'channel', 'cost_source')
              if (value := getattr(query, name))}
    if query.sort != 'time':
        params['sort'] = query.sort
    for name, moment in (('from', query.start), ('to', query.end)):
        if isinstance(moment, datetime):
            params[name] = moment.isoformat()
    return params


def _save(query: UsageQuery, kind: str) -> str:
    rt = runtime.current()
    text = ''.join(export_usage(lambda q: rt.read(list_usage, q), query, kind))
    return str(native.save_download(text, f'usage.{kind}'))
