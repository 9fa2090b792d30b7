"""Policies page: every budget policy with its current spend, an editor to add or change one, delete."""
from __future__ import annotations

from typing import Any

from nicegui import run, ui

from app import runtime
from app.security.session import can_change, page_actor
from components.layout import frame, lock
from services.budget import allocations, limits, policies
from services.budget.policies import ACTIONS, CHANNELS, POLICY_PERIODS, SCOPES, PolicyOut
from services.core.access import Actor
from services.core.display import format_usd_all
from services.core.errors import DomainError


class PolicyRow(PolicyOut):
    spent_micros: int  # the costliest scope value's spend in the current period
    top_scope: str  # that scope value ('' for a global policy or without spend)


def _load() -> list[PolicyRow]:
    rt = runtime.current()
    items: list[PolicyRow] = []
    for p in rt.read(policies.list_policies):
        spend = rt.checker.current_spend(p.id) if rt.checker else {}
        top = max(spend.items(), key=lambda kv: kv[1], default=('', 0))
        items.append({**p.as_dict(), 'spent_micros': top[1], 'top_scope': top[0]})
    return items


def _save(actor: Actor, policy_id: int | None, data: dict[str, Any]) -> PolicyOut:
    """Create or change a policy; raises PolicyInvalid / PolicyNotFound with a message naming the field."""
    commands = runtime.current().commands.policies
    if policy_id is None:
        return commands.create(actor, data).as_dict()
    return commands.update(actor, policy_id, data).as_dict()


@ui.page('/policies')
async def policies_page() -> None:
    items = await run.io_bound(_load)
    if items is None:  # the app is stopping
        return
    editing: dict[str, int | None] = {'id': None}
    editable = can_change()
    with frame('Policies'):
        ui.label('Budget policies').classes('text-h6')
        ui.label('Below soft: allow · soft: warn · critical: throttle · at or over the limit: block — '
                 'never beyond the action').classes('text-caption text-grey')

        @ui.refreshable
        def listing() -> None:
            if not items:
                ui.label('No policies yet: add one below').classes('text-grey').mark('no-policies')
                return
            for item in items:
                with ui.card().classes('w-full gap-1').mark(f'policy-{item["id"]}'):
                    with ui.row().classes('w-full items-center justify-between no-wrap'):
                        scope = item['scope'] + (f' = {item["scope_value"]}' if item['scope_value'] else '')
                        ui.label(f'{item["name"]} · {scope} · per {item["period"]}').classes('text-subtitle1')
                        with ui.row().classes('gap-1'):
                            ui.badge(item['action'], color='grey').props('outline')
                            ui.badge(item['origin'], color='grey').props('outline')
                            if item['auto_eco']:
                                ui.badge('eco at soft', color='green').props('outline')
                            if item['auto_pause']:
                                ui.badge('pauses the agent', color='orange').props('outline')
                            if not item['enabled']:
                                ui.badge('disabled', color='red').props('outline')
                            if item['origin'] == allocations.ORIGIN:  # edited with its allocation
                                ui.button(icon='call_split', on_click=lambda: ui.navigate.to('/allocations')) \
                                    .props('flat dense round').mark(f'edit-{item["id"]}') \
                                    .tooltip('A share of an allocation: change it on the Allocations page')
                            elif item['origin'] in limits.ORIGINS:  # edited where the gauge's limit is
                                ui.button(icon='tune', on_click=lambda: ui.navigate.to('/')) \
                                    .props('flat dense round').mark(f'edit-{item["id"]}') \
                                    .tooltip('A budget limit: change it in Budget settings (dashboard) or set-limit')
                            else:
                                edit_button = ui.button(icon='edit', on_click=lambda i=item: edit(i)) \
                                    .props('flat dense round').mark(f'edit-{item["id"]}')
                                delete_button = ui.button(icon='delete', on_click=lambda i=item: remove(i)) \
                                    .props('flat dense round').mark(f'delete-{item["id"]}')
                                if not editable:
                                    lock(edit_button, delete_button)
                    top = f' (highest: {item["top_scope"]})' if item['top_scope'] and not item['scope_value'] else ''
                    spent, limit = format_usd_all([item['spent_micros'], item['limit_micros']])
                    ui.label(f'{spent}{top} of {limit} · soft '
                             f'{item["soft_percent"]}% · critical {item["critical_percent"]}%').classes('text-body2')

        listing()

        with ui.card().classes('w-full'):
            title = ui.label('Add a policy').classes('text-subtitle1')
            # a grid of full-width fields: every label fits (one column on a phone, four on a desktop)
            with ui.element('div').classes('w-full grid grid-cols-1 sm:grid-cols-2 lg:grid-cols-4 gap-x-4 gap-y-2'):
                name = ui.input('Name').classes('w-full').mark('name')
                scope = ui.select(list(SCOPES), value='global', label='Scope').classes('w-full').mark('scope')
                scope_value = ui.input('Scope value (empty: each)').classes('w-full').mark('scope_value')
                period = ui.select(list(POLICY_PERIODS), value='day', label='Period').classes('w-full').mark('period')
                start = ui.input('From (YYYY-MM-DD)').classes('w-full').mark('period_start')
                end = ui.input('To (YYYY-MM-DD)').classes('w-full').mark('period_end')
                limit = ui.input('Limit (USD)').classes('w-full').mark('limit_usd')
                soft = ui.number('Soft %', value=80, min=1, max=100, format='%d').classes('w-full') \
                    .mark('soft_percent')
                critical = ui.number('Critical %', value=95, min=1, max=100, format='%d').classes('w-full') \
                    .mark('critical_percent')
                action = ui.select(list(ACTIONS), value='warn', label='Action (highest step)').classes('w-full') \
                    .mark('action')
                notify = ui.select(list(CHANNELS), multiple=True, value=[], label='Notify').classes('w-full') \
                    .mark('notify')
            with ui.row().classes('w-full gap-x-4 gap-y-0'):
                auto_eco = ui.checkbox('Eco mode at soft').mark('auto_eco')
                auto_pause = ui.checkbox('Pause the agent at the limit').mark('auto_pause')
                enabled = ui.checkbox('Enabled', value=True).mark('enabled')
            error = ui.label('').classes('text-negative').mark('policy-error')
            with ui.row():
                save_button = ui.button('Save', on_click=lambda: save()).mark('save-policy')
                new_button = ui.button('New', on_click=lambda: reset()).props('flat').mark('new-policy')
            if not editable:
                lock(name, scope, scope_value, period, start, end, limit, soft, critical, action, notify, auto_eco,
                     auto_pause, enabled, save_button, new_button)
            start.bind_visibility_from(period, 'value', backward=lambda v: v == 'custom')
            end.bind_visibility_from(period, 'value', backward=lambda v: v == 'custom')

    def form() -> dict[str, Any]:
        data: dict[str, Any] = {
            'name': name.value, 'scope': scope.value, 'scope_value': scope_value.value.strip() or None,
            'period': period.value, 'limit_usd': limit.value.strip().lstrip('$') or None,
            'soft_percent': int(soft.value or 0), 'critical_percent': int(critical.value or 0),
            'action': action.value, 'notify': list(notify.value or []), 'auto_eco': auto_eco.value,
            'auto_pause': auto_pause.value, 'enabled': enabled.value}
        if period.value == 'custom':
            data.update(period_start=start.value.strip() or None, period_end=end.value.strip() or None)
        else:
            data.update(period_start=None, period_end=None)
        return data

    async def refresh() -> None:
        fresh = await run.io_bound(_load)
        if fresh is None:
            return
        items[:] = fresh
        listing.refresh()

    async def save() -> None:
        try:
            saved = await run.io_bound(_save, page_actor(), editing['id'], form())
        except DomainError as exc:  # invalid, read-only, gone or not allowed: the message says which
            error.text = str(exc)
            return
        if saved is None:
            return
        error.text = ''
        ui.notify(f'Saved {saved["name"]}', type='positive')
        reset()
        await refresh()

    def edit(item: PolicyRow) -> None:
        editing['id'] = item['id']
        title.text = f'Edit {item["name"]}'
        name.value, scope.value, scope_value.value = item['name'], item['scope'], item['scope_value'] or ''
        period.value, start.value, end.value = item['period'], item['period_start'] or '', item['period_end'] or ''
        limit.value, soft.value, critical.value = item['limit_usd'], item['soft_percent'], item['critical_percent']
        action.value, notify.value = item['action'], item['notify']
        auto_eco.value, auto_pause.value, enabled.value = item['auto_eco'], item['auto_pause'], item['enabled']

    def reset() -> None:
        editing['id'] = None
        title.text = 'Add a policy'
        name.value = scope_value.value = limit.value = start.value = end.value = ''
        scope.value, period.value, action.value, notify.value = 'global', 'day', 'warn', []
        soft.value, critical.value, auto_eco.value, auto_pause.value, enabled.value = 80, 95, False, False, True

    async def remove(item: PolicyRow) -> None:
        try:
            await run.io_bound(runtime.current().commands.policies.delete, page_actor(), item['id'])
        except policies.PolicyNotFound:
            pass
        except DomainError as exc:
            ui.notify(str(exc), type='warning')
            return
        ui.notify(f'Deleted {item["name"]}')
        await refresh()

