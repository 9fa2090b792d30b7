"""Allocations page: every allocation with its shares' limits and spend, an editor to add or change one (its shares
as rows: a scope, a value and `60%` or `$150`), delete. Every change goes through the allocation commands."""
from __future__ import annotations

from typing import Any

from nicegui import run, ui

from app import runtime
from app.pages.live_refresh import ThrottledRefresh
from app.security.session import can_change, page_actor
from components.layout import frame, lock
from services.budget import allocations
from services.budget.allocations import ALLOCATION_PERIODS, SHARE_SCOPES, AllocationOut, ShareOut
from services.budget.policies import ACTIONS, CHANNELS
from services.core.access import Actor
from services.core.display import format_usd, format_usd_all
from services.core.errors import DomainError
from services.dashboard import Part

LIVE_REFRESH_S = 2.0  # new calls and policy changes show at most this often (the spend is the checker's, in memory)


def _load() -> list[AllocationOut]:
    rt = runtime.current()
    return [a.as_dict(rt.policy_spend) for a in rt.read(allocations.list_allocations)]


def _save(actor: Actor, allocation_id: int | None, data: dict[str, Any]) -> AllocationOut:
    commands = runtime.current().commands.allocations
    if allocation_id is None:
        return commands.create(actor, data).as_dict()
    return commands.update(actor, allocation_id, data).as_dict()


def share_input(text: str) -> dict[str, str | None]:
    """`60%` -> a percent share; `$150` or `150` -> an amount share (the command validates both)."""
    text = text.strip()
    if text.endswith('%'):
        return {'percent': text.removesuffix('%').strip() or None}
    return {'amount_usd': text.removeprefix('$').strip() or None}


def share_text(share: ShareOut) -> str:
    return f'{share["percent"]}%' if share['percent'] is not None else share['amount_usd'] or ''


@ui.page('/allocations')
async def allocations_page() -> None:
    items = await run.io_bound(_load)
    if items is None:  # the app is stopping
        return
    editing: dict[str, int | None] = {'id': None}
    rows: list[dict[str, str]] = [{'scope': 'project', 'value': '', 'share': ''}]
    editable = can_change()
    with frame('Allocations'):
        ui.label('Allocations').classes('text-h6')
        ui.label('A budget split by percent or amount; each share is a policy of its own (same ladder, alerts and '
                 'blocking), and the whole limit one too unless switched off').classes('text-caption text-grey')

        @ui.refreshable
        def listing() -> None:
            if not items:
                ui.label('No allocations yet: add one below').classes('text-grey').mark('no-allocations')
                return
            for item in items:
                with ui.card().classes('w-full gap-1').mark(f'allocation-{item["id"]}'):
                    with ui.row().classes('w-full items-center justify-between no-wrap'):
                        ui.label(f'{item["name"]} · {format_usd(item["limit_micros"])} per {item["period"]}') \
                            .classes('text-subtitle1')
                        with ui.row().classes('gap-1 no-wrap'):
                            ui.badge(item['action'], color='grey').props('outline')
                            edit_button = ui.button(icon='edit', on_click=lambda i=item: edit(i)) \
                                .props('flat dense round').mark(f'edit-allocation-{item["id"]}')
                            delete_button = ui.button(icon='delete', on_click=lambda i=item: remove(i)) \
                                .props('flat dense round').mark(f'delete-allocation-{item["id"]}')
                            if not editable:
                                lock(edit_button, delete_button)
                    allocated, spent = format_usd_all([item['allocated_micros'], item['spent_micros']])
                    whole = 'the whole limit enforced' if item['enforce_total'] else 'only the shares enforced'
                    ui.label(f'{allocated} allocated · {spent} spent this {item["period"]} · {whole}') \
                        .classes('text-body2')
                    for share in item['shares']:
                        spent, limit = format_usd_all([share['spent_micros'], share['limit_micros']])
                        part = f'{share["percent"]} %' if share['percent'] is not None else 'fixed'
                        ui.label(f'{share["scope"]} = {share["scope_value"]} · {part} · {spent} of {limit}') \
                            .classes('text-body2 break-all').mark(f'share-{share["policy_id"]}')

        listing()

        with ui.card().classes('w-full'):
            title = ui.label('Add an allocation').classes('text-subtitle1')
            with ui.element('div').classes('w-full grid grid-cols-1 sm:grid-cols-2 lg:grid-cols-4 gap-x-4 gap-y-2'):
                name = ui.input('Name').classes('w-full').mark('allocation-name')
                period = ui.select(list(ALLOCATION_PERIODS), value='month', label='Period').classes('w-full') \
                    .mark('allocation-period')
                limit = ui.input('Limit (USD)').classes('w-full').mark('allocation-limit')
                action = ui.select(list(ACTIONS), value='warn', label='Action (highest step)').classes('w-full') \
                    .mark('allocation-action')
                soft = ui.number('Soft %', value=80, min=1, max=100, format='%d').classes('w-full') \
                    .mark('allocation-soft')
                critical = ui.number('Critical %', value=95, min=1, max=100, format='%d').classes('w-full') \
                    .mark('allocation-critical')
                notify = ui.select(list(CHANNELS), multiple=True, value=[], label='Notify').classes('w-full') \
                    .mark('allocation-notify')
            enforce_total = ui.checkbox('Enforce the whole limit too', value=True).mark('allocation-enforce-total')
            ui.label('Shares: 60% of the limit, or an amount such as $150').classes('text-caption text-grey')

            @ui.refreshable
            def share_rows() -> None:
                for index, row in enumerate(rows):
                    with ui.row().classes('w-full items-center gap-2 no-wrap'):
                        ui.select(list(SHARE_SCOPES), value=row['scope'], label='Scope',
                                  on_change=lambda e, r=row: r.update(scope=e.value)) \
                            .classes('w-28 shrink-0').mark(f'share-scope-{index}')
                        ui.input('Value', value=row['value'], on_change=lambda e, r=row: r.update(value=e.value)) \
                            .classes('grow min-w-0').mark(f'share-value-{index}')
                        ui.input('Share', value=row['share'], on_change=lambda e, r=row: r.update(share=e.value)) \
                            .classes('w-24 shrink-0').mark(f'share-amount-{index}')
                        remove_row = ui.button(icon='close', on_click=lambda i=index: drop_row(i)) \
                            .props('flat dense round aria-label="Remove the share"').mark(f'share-remove-{index}')
                        if not editable:
                            lock(remove_row)

            share_rows()
            error = ui.label('').classes('text-negative').mark('allocation-error')
            with ui.row():
                add_row = ui.button('Add a share', icon='add', on_click=lambda: add_share()).props('flat') \
                    .mark('share-add')
                save_button = ui.button('Save', on_click=lambda: save()).mark('save-allocation')
                new_button = ui.button('New', on_click=lambda: reset()).props('flat').mark('new-allocation')
            if not editable:
                lock(name, period, limit, action, soft, critical, notify, enforce_total, add_row, save_button,
                     new_button)

    def form() -> dict[str, Any]:
        return {'name': name.value, 'period': period.value, 'limit_usd': limit.value.strip().lstrip('$') or None,
                'action': action.value, 'soft_percent': int(soft.value or 0),
                'critical_percent': int(critical.value or 0), 'notify': list(notify.value or []),
                'enforce_total': enforce_total.value,
                'shares': [{'scope': r['scope'], 'scope_value': r['value'], **share_input(r['share'])}
                           for r in rows if r['value'].strip() or r['share'].strip()]}

    def add_share() -> None:
        rows.append({'scope': rows[-1]['scope'] if rows else 'project', 'value': '', 'share': ''})
        share_rows.refresh()

    def drop_row(index: int) -> None:
        del rows[index]
        if not rows:
            rows.append({'scope': 'project', 'value': '', 'share': ''})
        share_rows.refresh()

    async def refresh() -> None:
        fresh = await run.io_bound(_load)
        if fresh is None:
            return
        items[:] = fresh
        listing.refresh()

    ThrottledRefresh(refresh, LIVE_REFRESH_S).follow({Part.TODAY, Part.BUDGET})  # the shares' spend and limits

    async def save() -> None:
        try:
            saved = await run.io_bound(_save, page_actor(), editing['id'], form())
        except DomainError as exc:  # invalid, taken, gone or not allowed: the message says which
            error.text = str(exc)
            return
        if saved is None:
            return
        error.text = ''
        ui.notify(f'Saved {saved["name"]}: {len(saved["shares"])} shares', type='positive')
        reset()
        await refresh()

    def edit(item: AllocationOut) -> None:
        editing['id'] = item['id']
        title.text = f'Edit {item["name"]}'
        name.value, period.value, limit.value = item['name'], item['period'], item['limit_usd']
        action.value, soft.value, critical.value = item['action'], item['soft_percent'], item['critical_percent']
        notify.value, enforce_total.value = item['notify'], item['enforce_total']
        rows[:] = [{'scope': s['scope'], 'value': s['scope_value'], 'share': share_text(s)} for s in item['shares']]
        share_rows.refresh()

    def reset() -> None:
        editing['id'] = None
        title.text = 'Add an allocation'
        name.value = limit.value = ''
        period.value, action.value, notify.value = 'month', 'warn', []
        soft.value, critical.value, enforce_total.value = 80, 95, True
        rows[:] = [{'scope': 'project', 'value': '', 'share': ''}]
        share_rows.refresh()

    async def remove(item: AllocationOut) -> None:
        try:
            await run.io_bound(runtime.current().commands.allocations.delete, page_actor(), item['id'])
        except allocations.AllocationNotFound:
            pass
        except DomainError as exc:
            ui.notify(str(exc), type='warning')
            return
        ui.notify(f'Deleted {item["name"]}')
        await refresh()
