"""Log in and out (NiceGUI's authentication pattern: the request guard sends pages to /login until the session holds
a user; the session lives in NiceGUI's per-user storage behind the signed cookie)."""
from __future__ import annotations

from fastapi.responses import RedirectResponse
from nicegui import run, ui

from app import runtime
from app.security import session
from components import theme
from components.layout import stored_dark_mode
from services.accounts.throttle import LoginThrottle

throttle = LoginThrottle()


def _local_path(target: str) -> str:
    """Only a path on this server (no //evil.example, no scheme): an open redirect otherwise."""
    return target if target.startswith('/') and not target.startswith(('//', '/\\')) else '/'


@ui.page('/login')
def login_page(next: str = '/') -> RedirectResponse | None:
    target = _local_path(next)
    if not session.login_required() or session.session_actor() is not None:
        return RedirectResponse(target)
    ui.page_title('Log in · SpendGauge')
    ui.colors(primary=theme.GOLD)
    stored_dark_mode()
    directory = runtime.current().accounts

    async def attempt() -> None:
        name, password = (user.value or '').strip(), password_field.value or ''
        wait = throttle.locked_for(name)
        if wait:
            ui.notify(f'Too many wrong passwords for {name!r}: try again in {int(wait) + 1} s', type='warning')
            return
        actor = await run.io_bound(directory.login, name, password)  # argon2 takes a moment: off the event loop
        if actor is None:
            throttle.failed(name)
            ui.notify('Wrong name or password', type='negative')
            password_field.value = ''
            return
        throttle.succeeded(name)
        session.log_in(actor)
        ui.navigate.to(target)

    with ui.card().classes('absolute-center w-80 max-w-[90vw]').mark('login-card'):
        with ui.row().classes('items-center gap-2'):
            ui.image('/assets/favicon.svg').classes('w-8 h-8')
            ui.label('SpendGauge').classes('text-h6 text-[#d4a72c]')
        user = ui.input('User').props('autofocus autocomplete=username').classes('w-full').mark('login-user')
        password_field = ui.input('Password', password=True).props('autocomplete=current-password') \
            .classes('w-full').on('keydown.enter', attempt).mark('login-password')
        ui.button('Log in', on_click=attempt).classes('w-full').mark('login-submit')
        if not directory.has_users:
            ui.label('No dashboard user exists yet. Create an admin on the server: '
                     '`spendgauge user create NAME --admin` (or set SPENDGAUGE_ADMIN_PASSWORD).') \
                .classes('text-caption text-grey').mark('login-no-users')
    return None


@ui.page('/logout')
def logout_page() -> RedirectResponse:
    session.log_out()
    return RedirectResponse('/login')
