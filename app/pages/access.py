"""Settings: API tokens (created with a role, shown once, revoked) and dashboard users, for admins; every user can
change their own password here."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from nicegui import run, ui

from app import runtime
from app.security.session import can_change, page_actor, session_actor
from components.layout import frame, lock
from services.accounts import tokens, users
from services.accounts.tokens import TokenOut
from services.accounts.users import UserOut
from services.core.access import Role
from services.core.errors import DomainError

TOKEN_ROLES = {Role.INGEST.value: 'ingest: record usage, /check', Role.READ.value: 'read: every GET',
               Role.ADMIN.value: 'admin: everything'}
USER_ROLES = {Role.READ.value: 'read-only', Role.ADMIN.value: 'admin'}
T = TypeVar('T')


def _load() -> tuple[list[TokenOut], list[UserOut]]:
    rt = runtime.current()
    return rt.read(tokens.list_tokens), rt.read(users.list_users)


@ui.page('/settings')
async def settings_page() -> None:
    loaded = await run.io_bound(_load)
    if loaded is None:  # the app is stopping
        return
    token_items, user_items = loaded
    editable = can_change()
    me = session_actor()
    commands = runtime.current().commands.accounts

    with frame('Settings'):
        ui.label('Access').classes('text-h6')
        if not editable:
            ui.label('Tokens and users are managed by admins.').classes('text-grey').mark('access-read-only')

        with ui.card().classes('w-full gap-2').mark('tokens-card'):
            ui.label('API tokens').classes('text-subtitle1')
            ui.label('Agents and the LiteLLM callback send `Authorization: Bearer <token>`. A token is shown once, '
                     'when it is created; only its hash is kept.').classes('text-caption text-grey')

            @ui.refreshable
            def token_list() -> None:
                if not token_items:
                    ui.label('No tokens yet').classes('text-grey').mark('no-tokens')
                for item in token_items:
                    with ui.row().classes('w-full items-center justify-between no-wrap').mark(f'token-{item["id"]}'):
                        ui.label(f'{item["name"]} · {item["role"]} · {item["prefix"]}… · created '
                                 f'{item["created_at"][:16].replace("T", " ")} by {item["created_by"]}')
                        revoke_button = ui.button('Revoke', on_click=lambda i=item: revoke(i)) \
                            .props('flat dense color=negative').mark(f'revoke-{item["id"]}')
                        if not editable:
                            lock(revoke_button)

            token_list()
            with ui.row().classes('w-full items-end gap-2'):
                token_name = ui.input('Name (who uses it)').classes('w-56').mark('token-name')
                token_role = ui.select(TOKEN_ROLES, value=Role.INGEST.value, label='Role').classes('w-56') \
                    .mark('token-role')
                create_button = ui.button('Create token', icon='key', on_click=lambda: create_token()) \
                    .mark('create-token')
            shown = ui.input('New token (copy it now: it is not shown again)').props('readonly') \
                .classes('w-full font-mono').mark('new-token')
            shown.set_visibility(False)
            if not editable:
                lock(token_name, token_role, create_button)

        with ui.card().classes('w-full gap-2').mark('users-card'):
            ui.label('Dashboard users').classes('text-subtitle1')

            @ui.refreshable
            def user_list() -> None:
                for item in user_items:
                    with ui.row().classes('w-full items-center justify-between no-wrap').mark(f'user-{item["name"]}'):
                        ui.label(f'{item["name"]} · {USER_ROLES.get(item["role"], item["role"])}')
                        delete_button = ui.button('Delete', on_click=lambda i=item: delete_user(i)) \
                            .props('flat dense color=negative').mark(f'delete-user-{item["name"]}')
                        if not editable:
                            lock(delete_button)

            user_list()
            with ui.row().classes('w-full items-end gap-2'):
                user_name = ui.input('Name').classes('w-48').mark('user-name')
                user_password = ui.input('Password (10+ characters)', password=True).classes('w-56') \
                    .props('autocomplete=new-password').mark('user-password')
                user_role = ui.select(USER_ROLES, value=Role.READ.value, label='Role').classes('w-40') \
                    .mark('user-role')
                add_button = ui.button('Add user', icon='person_add', on_click=lambda: add_user()).mark('add-user')
            if not editable:
                lock(user_name, user_password, user_role, add_button)

        if me is not None and me.name in {u['name'] for u in user_items}:
            with ui.card().classes('w-full gap-2').mark('password-card'):
                ui.label(f'Your password ({me.name})').classes('text-subtitle1')
                with ui.row().classes('items-end gap-2'):
                    new_password = ui.input('New password', password=True).props('autocomplete=new-password') \
                        .classes('w-56').mark('new-password')
                    ui.button('Change', on_click=lambda: change_password()).mark('change-password')

    async def reload() -> None:
        fresh = await run.io_bound(_load)
        if fresh is None:
            return
        token_items[:], user_items[:] = fresh
        token_list.refresh()
        user_list.refresh()

    async def attempt(command: Callable[..., T], *args: Any) -> T | None:
        """The command as this page's user, in a worker thread; None (after saying why) when it was refused or the
        app is stopping."""
        try:
            return await run.io_bound(command, page_actor(), *args)
        except DomainError as exc:
            ui.notify(str(exc), type='warning')
            return None

    async def create_token() -> None:
        created = await attempt(commands.create_token, Role(token_role.value), token_name.value or '')
        if created is None:
            return
        shown.value = created['token']
        shown.set_visibility(True)
        token_name.value = ''
        ui.notify(f'Created token {created["name"]} ({created["role"]}): copy it now', type='positive')
        await reload()

    async def revoke(item: TokenOut) -> None:
        if await attempt(commands.revoke_token, item['id']) is None:
            return
        ui.notify(f'Revoked {item["name"]}')
        await reload()

    async def add_user() -> None:
        user = await attempt(commands.create_user, user_name.value or '', user_password.value or '',
                             Role(user_role.value))
        if user is None:
            return
        user_name.value = user_password.value = ''
        ui.notify(f'Added {user["name"]} ({USER_ROLES[user["role"]]})', type='positive')
        await reload()

    async def delete_user(item: UserOut) -> None:
        if await attempt(commands.delete_user, item['name']) is None:
            return
        ui.notify(f'Deleted {item["name"]}')
        await reload()

    async def change_password() -> None:
        try:
            actor = page_actor()
            await run.io_bound(commands.set_password, actor, actor.name, new_password.value or '')
        except DomainError as exc:
            ui.notify(str(exc), type='warning')
            return
        ui.notify('Password changed: log in again', type='positive')
        ui.navigate.to('/logout')
