"""Sessions page: the last 30 sessions, a click for the per-agent breakdown, and the CSV export."""
from __future__ import annotations

from nicegui import run, ui

from app import native, runtime
from app.feed import feed
from components.layout import frame
from components.sessions_table import breakdown_costs, breakdown_table, session_rows, sessions_table
from services.core.display import plural
from services.dashboard import DashboardSnapshot, Part
from services.spend import sessions


@ui.page('/sessions')
async def sessions_page() -> None:
    data = await feed().current()
    zone = runtime.current().settings.zone
    with frame('Sessions'):
        dialog, body = _breakdown_dialog()

        async def show_breakdown(session_id: str) -> None:
            session = await run.io_bound(_load_session, session_id)
            if session is None:
                ui.notify(f'Session {session_id} is gone', type='warning')
                return
            body.clear()
            with body:
                ui.label(f'Session {session_id}').classes('text-h6')
                ui.label(f'{plural(session["requests"], "request")} · {plural(session["tokens"], "token")} · '
                         f'{breakdown_costs(session)[1]}').classes('text-grey').mark('session-total')
                breakdown_table(session)
            dialog.open()

        async def export_csv() -> None:
            if not native.active:
                ui.download('/download/sessions.csv')
                return
            path = await run.io_bound(_save_csv)  # a desktop window cannot download: save it for the user
            ui.notify(f'Saved {path}', type='positive')

        with ui.row().classes('w-full items-center justify-between'):
            ui.label('Recent sessions').classes('text-h6')
            ui.button('Export CSV', icon='download', on_click=export_csv).mark('export-csv')
        empty = ui.label('No sessions yet: a session starts with its first event').classes('text-grey')
        table = sessions_table(data.sessions, zone, show_breakdown)
        empty.set_visibility(not data.sessions)

    shown = [data.sessions]

    def update(new: DashboardSnapshot) -> None:
        if new.sessions == shown[0]:
            return
        shown[0] = new.sessions
        table.rows = session_rows(new.sessions, zone)
        table.update()
        empty.set_visibility(not new.sessions)

    unsubscribe = feed().subscribe(update, parts={Part.SESSIONS})
    ui.context.client.on_delete(unsubscribe)


def _load_session(session_id: str) -> sessions.SessionDetail | None:
    try:
        return runtime.current().read(sessions.get_session, session_id)
    except sessions.SessionNotFound:
        return None


def _save_csv() -> str:
    return str(native.save_download(runtime.current().read(sessions.sessions_csv), 'sessions.csv'))


def _breakdown_dialog() -> tuple[ui.dialog, ui.column]:
    with ui.dialog() as dialog, ui.card().classes('min-w-[320px] max-w-[640px] w-full'):
        body = ui.column().classes('w-full')
        ui.button('Close', on_click=dialog.close).props('flat')
    return dialog, body
