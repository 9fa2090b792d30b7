"""The dashboard's Budget settings panel: the daily limit and how far it goes (block, throttle or warn only), and the
thresholds every agent is held to (per session and per day), with the option to pause an agent that crosses one."""
from __future__ import annotations

from decimal import Decimal

from nicegui import run, ui

from app import runtime
from app.security.session import page_actor
from components.layout import lock
from services.budget import thresholds
from services.budget.limits import LimitOut
from services.budget.thresholds import ThresholdsOut
from services.core.errors import DomainError
from services.core.money import micros_to_usd, parse_usd, usd_to_micros
from services.dashboard import DashboardSnapshot


def _usd_text(micros: int | None) -> str:
    return '' if micros is None else micros_to_usd(micros).rstrip('0').rstrip('.')


def _amount(text: str | None, label: str) -> Decimal | None:
    """What a field holds: empty for none, else a dollar amount above $0."""
    text = (text or '').strip()
    if not text:
        return None
    try:
        value = parse_usd(text, name=label)
    except ValueError:
        raise ValueError(f'{label}: {text.lstrip("$")!r} is not an amount in USD') from None
    if value <= 0:
        raise ValueError(f'{label}: must be more than $0')
    return value


LIMIT_ACTIONS = {'block': 'Block at 100 % (warn 80 %, throttle 95 %)', 'throttle': 'Throttle at 95 % (warn 80 %)',
                 'warn': 'Warn only (alerts, never refuses)'}


class BudgetSettingsPanel:
    """Built once; `update` follows the feed so every open tab shows what was saved last."""

    def __init__(self, data: DashboardSnapshot, editable: bool = True) -> None:
        with ui.expansion('Budget settings', icon='tune').classes('w-full').mark('budget-settings'):
            with ui.row().classes('w-full items-end gap-4'):
                self.daily = ui.input('Daily limit (USD)').props('dense inputmode=decimal clearable') \
                    .classes('w-36').mark('daily-limit').tooltip('Empty: no daily limit')
                self.action = ui.select(LIMIT_ACTIONS, value='block', label='At the limit').props('dense') \
                    .classes('w-72').mark('limit-action')
                self.session = ui.input('Per agent and session (USD)').props('dense inputmode=decimal clearable') \
                    .classes('w-56').mark('session-threshold') \
                    .tooltip('An agent crossing this within one session is reported')
                self.day = ui.input('Per agent and day (USD)').props('dense inputmode=decimal clearable') \
                    .classes('w-56').mark('day-threshold').tooltip('An agent crossing this today is reported')
                self.pause = ui.checkbox('Pause an agent that crosses one').mark('pause-on-threshold')
                save = ui.button('Save', icon='save', on_click=self.save).props('dense').mark('save-budget-settings')
                if not editable:
                    lock(self.daily, self.action, self.session, self.day, self.pause, save)
            self.note = ui.label().classes('text-caption text-grey').mark('thresholds-note')
        self.shown: tuple[LimitOut | None, ThresholdsOut] | None = None
        self.update(data)

    def update(self, data: DashboardSnapshot) -> None:
        """Refill the fields when what is stored changed (not on every snapshot, so typing is not overwritten)."""
        limit, stored = data.limit, data.thresholds
        if (limit, stored) == self.shown:
            return
        self.shown = limit, stored
        self.daily.value = _usd_text(limit['limit_micros'] if limit else None)
        self.action.value = limit['action'] if limit else 'block'
        self.session.value = _usd_text(stored['session_threshold_micros'])
        self.day.value = _usd_text(stored['day_threshold_micros'])
        self.pause.value = stored['pause']
        self.note.set_text(thresholds.describe(thresholds.Thresholds(
            stored['session_threshold_micros'], stored['day_threshold_micros'], stored['pause'])))

    async def save(self) -> None:
        try:
            daily = _amount(self.daily.value, 'Daily limit')
            session = _amount(self.session.value, 'Per agent and session')
            day = _amount(self.day.value, 'Per agent and day')
        except ValueError as exc:
            ui.notify(str(exc), type='warning')
            return
        commands = runtime.current().commands
        try:
            actor = page_actor()
            shown = self.shown[0] if self.shown else None
            if daily is None:
                if shown is not None:
                    await run.io_bound(commands.limits.remove, actor, 'day')
            elif shown is None or (usd_to_micros(daily), self.action.value) != (shown['limit_micros'],
                                                                                shown['action']):
                await run.io_bound(commands.limits.set, actor, 'day', usd_to_micros(daily), self.action.value)
            stored = await run.io_bound(commands.policies.set_thresholds, actor, session, day, bool(self.pause.value))
        except DomainError as exc:
            ui.notify(str(exc), type='warning')
            return
        if stored is None:  # the app is stopping
            return
        limit = f'daily limit ${daily} ({self.action.value}); ' if daily is not None else 'no daily limit; '
        ui.notify(f'Saved: {limit}{thresholds.describe(stored)}', type='positive')
