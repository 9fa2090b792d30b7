"""The frame around every page: header, navigation and the light/dark switch."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nicegui import app, ui

from components import theme

NAV = (('Dashboard', '/'), ('Sessions', '/sessions'), ('API', '/docs'))


@contextmanager
def frame(title: str) -> Iterator[ui.column]:
    ui.page_title(f'{title} · SpendGauge')
    ui.colors(primary=theme.GOLD)
    dark = ui.dark_mode(app.storage.user.get('dark', True))

    def toggle_dark() -> None:
        dark.value = not dark.value
        app.storage.user['dark'] = dark.value

    with ui.header().classes('items-center justify-between px-4 py-2 bg-[#1f2330]'):
        with ui.row().classes('items-center gap-2 no-wrap'):
            ui.image('/assets/favicon.svg').classes('w-8 h-8')
            ui.label('SpendGauge').classes('text-h6 text-[#d4a72c]')
        with ui.row().classes('items-center gap-1 no-wrap'):
            for label, target in NAV:
                ui.button(label, on_click=lambda t=target: ui.navigate.to(t)).props('flat color=white dense')
            ui.button(icon='dark_mode', on_click=toggle_dark) \
                .props('flat round color=white dense aria-label="Light or dark"') \
                .tooltip('Light or dark').mark('dark-toggle')
    with ui.column().classes('w-full max-w-screen-xl mx-auto p-2 sm:p-4 gap-4') as content:
        yield content
