"""The reports page's "Daily digest" card: a day picker, the key figures, the text version in a monospace block
(what the e-mail's text part and the log carry), and "Send now". Plain data in: the page passes how to load a
digest and how to send one."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date

from nicegui import ui

from components.layout import lock
from services.core.display import format_usd
from services.insights.digest import DigestOut
from services.insights.digest_render import digest_text

Loader = Callable[[str], Awaitable[DigestOut | str | None]]  # a digest, a refusal's message, or None (stopping)
Sender = Callable[[str], Awaitable[None]]


def key_figures(d: DigestOut) -> list[tuple[str, str]]:
    """(label, value) for the chips above the preview."""
    limit = 'no limit' if d['limit_micros'] is None else f'{d["percent"]} % of {format_usd(d["limit_micros"])}'
    saving = d['saving']
    return [('Spent', format_usd(d['spent_micros'])), ('Day limit', limit),
            ('Alerts', str(d['alerts_count'])), ('Anomalies', str(d['anomalies_count'])),
            ('Today', d['forecast']['text']),
            ('Biggest saving', f'{format_usd(saving["saving_micros"])} ({saving["agent_id"] or "no agent"} on '
                               f'{saving["model"]})' if saving else 'none found')]


class DigestCard:
    def __init__(self, day: date, load: Loader, send: Sender, editable: bool) -> None:
        self.load, self.send = load, send
        self.loaded = False  # built when the card is first opened, not with every visit of the page
        with ui.expansion('Daily digest', icon='mail').classes('w-full').mark('digest-card') as self.expansion:
            with ui.row().classes('w-full items-end gap-4'):
                self.day = ui.input('Day', value=day.isoformat()).props('type=date stack-label') \
                    .classes('w-40').mark('digest-day')
                self.button = ui.button('Send now', icon='send', on_click=self._send).props('outline') \
                    .mark('digest-send')
                if not editable:
                    lock(self.button)
            self.error = ui.label('').classes('text-negative').mark('digest-error')
            self.figures = ui.row().classes('w-full gap-2').mark('digest-figures')
            self.preview = ui.label('').classes('w-full font-mono text-sm whitespace-pre-wrap break-words') \
                .mark('digest-preview')
        self.day.on_value_change(lambda _: self.refresh())
        self.expansion.on_value_change(lambda e: self.refresh() if e.value and not self.loaded else None)

    async def refresh(self) -> None:
        self.loaded = True
        found = await self.load(self.day.value or '')
        if found is None:
            return
        if isinstance(found, str):
            self.error.set_text(found)
            self.figures.clear()
            self.preview.set_text('')
            return
        self.error.set_text('')
        self.figures.clear()
        with self.figures:
            for label, value in key_figures(found):
                ui.chip(f'{label}: {value}').props('outline square').classes('text-xs')
        self.preview.set_text(digest_text(found))

    async def _send(self) -> None:
        await self.send(self.day.value or '')
