"""The frame around every page: header, navigation, the alerts bell and the light/dark switch."""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Literal, Protocol

from nicegui import app, ui
from nicegui.elements.mixins.disableable_element import DisableableElement

from components import theme
from services.dashboard import AlertCounts, DashboardSnapshot, Part

NAV = (('Dashboard', '/'), ('Usage', '/usage'), ('Sessions', '/sessions'), ('Policies', '/policies'),
       ('Allocations', '/allocations'), ('Alerts', '/alerts'), ('Reports', '/reports'), ('Optimise', '/optimize'),
       ('Settings', '/settings'), ('API', '/docs'))
ToastType = Literal['positive', 'negative', 'warning', 'info', 'ongoing']  # ui.notify's `type`
TOAST_TYPES: dict[str, ToastType] = {'critical': 'negative', 'warning': 'warning', 'info': 'info'}


class LiveData(Protocol):
    """The shared dashboard feed (app/feed.py): the latest snapshot and a way to hear of the next ones."""

    data: DashboardSnapshot | None

    def subscribe(self, listener: Callable[[DashboardSnapshot], None], frame: bool = False,
                  parts: Collection[Part] = ...) -> Callable[[], None]: ...


_live: LiveData | None = None
_identity: Callable[[], tuple[str, str] | None] | None = None


def use_identity(identity: Callable[[], tuple[str, str] | None] | None) -> None:
    """Set on start-up: who is logged in to this page's session, as (name, role); None when no login is used."""
    global _identity
    _identity = identity


def use_feed(live: LiveData | None) -> None:
    """Set on start-up: the bell and the alert toasts of every page follow this feed (no polling)."""
    global _live
    _live = live


class AlertBell:
    """The header bell: the unacknowledged count, and a toast for each alert newer than the page."""

    def __init__(self, counts: AlertCounts | None) -> None:
        with ui.button(icon='notifications', on_click=lambda: ui.navigate.to('/alerts')) \
                .props('flat round color=white dense aria-label="Alerts"').mark('alerts-bell') as self.button:
            self.badge = ui.badge('', color='red').props('floating').mark('alerts-count')
        self.button.tooltip('Alerts')
        self.seen_id = 0
        self.primed = False  # the first snapshot only sets what counts as already seen
        self.update(counts, toast=False)
        self.primed = counts is not None

    def update(self, counts: AlertCounts | None, toast: bool = True) -> None:
        count = counts['unacknowledged'] if counts else 0
        self.badge.set_text(str(count) if count < 100 else '99+')
        self.badge.set_visibility(count > 0)
        recent = counts['recent'] if counts else []
        newest = max((a['id'] for a in recent), default=0)
        if toast and self.primed:
            with self.button:  # toasts at the bottom: at the top they would cover the header's buttons
                for alert in sorted((a for a in recent if a['id'] > self.seen_id), key=lambda a: a['id']):
                    ui.notify(f'{alert["type"]}: {alert["message"]}', type=TOAST_TYPES.get(alert['severity'], 'info'),
                              position='bottom-right', timeout=8000)
        self.seen_id = max(self.seen_id, newest)
        self.primed = True


READ_ONLY_TIP = 'Read-only: an admin can change this'


def lock(*elements: DisableableElement) -> None:
    """Show a state-changing control disabled to a read-only user (the command refuses it anyway)."""
    for element in elements:
        element.disable()
        element.props['data-read-only'] = True
        element.tooltip(READ_ONLY_TIP)


def stored_dark_mode() -> ui.dark_mode:
    """Light or dark as this browser chose last (dark until it chooses)."""
    return ui.dark_mode(app.storage.user.get('dark', True))


@contextmanager
def frame(title: str) -> Iterator[ui.column]:
    ui.page_title(f'{title} · SpendGauge')
    ui.colors(primary=theme.GOLD)
    dark = stored_dark_mode()

    def toggle_dark() -> None:
        dark.value = not dark.value
        app.storage.user['dark'] = dark.value

    identity = _identity() if _identity is not None else None
    # Quasar's breakpoints: the links fit inline from 1440 px (gt-md), with a user's badge and log-out button too;
    # below that they are in the menu (lt-lg).
    # The bell and the light/dark button stay in the bar at every width.
    with ui.header().classes('items-center justify-between no-wrap px-2 sm:px-4 py-2 bg-[#1f2330]'):
        with ui.row().classes('items-center gap-2 no-wrap'):
            ui.image('/assets/favicon.svg').classes('w-8 h-8')
            ui.label('SpendGauge').classes('text-h6 text-[#d4a72c]')
        with ui.row().classes('items-center gap-1 no-wrap'):
            with ui.row().classes('gt-md items-center gap-1 no-wrap'):
                for label, target in NAV:
                    ui.button(label, on_click=lambda t=target: ui.navigate.to(t)) \
                        .props(f'flat dense color={"primary" if label == title else "white"}')
            if identity is not None and identity[1] != 'admin':
                ui.badge('read-only', color='grey').props('outline').mark('read-only-badge').tooltip(READ_ONLY_TIP)
            if _live is not None:
                bell = AlertBell(_live.data.alerts if _live.data is not None else None)
                ui.context.client.on_delete(_live.subscribe(lambda data: bell.update(data.alerts), frame=True,
                                                            parts={Part.ALERTS}))
            ui.button(icon='dark_mode', on_click=toggle_dark) \
                .props('flat round color=white dense aria-label="Light or dark"') \
                .tooltip('Light or dark').mark('dark-toggle')
            if identity is not None:
                name, role = identity
                ui.button(icon='logout', on_click=lambda: ui.navigate.to('/logout')).classes('gt-md') \
                    .props('flat round color=white dense aria-label="Log out"') \
                    .tooltip(f'Log out {name} ({role})').mark('logout')
            with ui.button(icon='menu').classes('lt-lg') \
                    .props('flat round color=white dense aria-label="Menu"').mark('nav-menu'):
                with ui.menu().props('anchor="bottom right" self="top right"'):
                    for label, target in NAV:
                        item = ui.menu_item(label, on_click=lambda t=target: ui.navigate.to(t))
                        if label == title:
                            item.props('active active-class=text-primary')
                    if identity is not None:
                        ui.separator()
                        ui.menu_item(f'Log out {identity[0]} ({identity[1]})',
                                     on_click=lambda: ui.navigate.to('/logout'))
    with ui.column().classes('w-full max-w-screen-xl mx-auto p-2 sm:p-4 gap-4') as content:
        yield content
