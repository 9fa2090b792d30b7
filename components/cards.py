"""Agent and task cards: plain data in (as the API returns it), cards out."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from inspect import isawaitable
from typing import Any

from nicegui import ui

from components.layout import lock
from services.core.display import format_usd, format_usd_all, plural
from services.spend.agents import AgentOut
from services.spend.tasks import TaskOut

TREND_ARROWS = {'up': '↗', 'down': '↘', 'flat': '→'}
HIGH_COST_PER_REQUEST_MICROS = 50_000  # $0.05
STATUS_COLOURS = {'pending': 'grey', 'running': 'blue', 'done': 'green', 'failed': 'red', 'cancelled': 'grey'}


def session_cost_level(cost_micros: int, warn_micros: int, alert_micros: int) -> str:
    """green below the warning threshold, yellow up to the alert threshold, red above it."""
    if cost_micros > alert_micros:
        return 'red'
    if cost_micros >= warn_micros:
        return 'yellow'
    return 'green'


def ago(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return 'never'
    seconds = int(((now or datetime.now(UTC)) - datetime.fromisoformat(iso)).total_seconds())
    if seconds < 60:
        return 'just now' if seconds < 5 else f'{seconds} s ago'
    if seconds < 3600:
        return f'{seconds // 60} min ago'
    if seconds < 86_400:
        return f'{seconds // 3600} h ago'
    return f'{seconds // 86_400} d ago'


@dataclass(frozen=True)
class Level:
    """How a session-cost level shows on a card: a word on a solid chip, a tinted header and an edge."""

    word: str
    chip: str  # Quasar colours of the chip and of its text
    chip_text: str
    edge: str
    tint: str  # the header's background: translucent, so the text stays readable on light and dark


LEVELS = {'green': Level('OK', 'green-8', 'white', 'border-green-500', 'bg-green-500/15'),
          'yellow': Level('Warning', 'amber-5', 'black', 'border-amber-400', 'bg-amber-400/20'),
          'red': Level('Alert', 'red-8', 'white', 'border-red-500', 'bg-red-500/20')}


def level_tip(level: str, cost_micros: int, warn_micros: int, alert_micros: int) -> str:
    cost, warn, alert = format_usd_all([cost_micros, warn_micros, alert_micros])
    if level == 'red':
        return f'Session cost {cost}: over the {alert} alert level'
    if level == 'yellow':
        return f'Session cost {cost}: at or over the {warn} warning level (alert above {alert})'
    return f'Session cost {cost}: under the {warn} warning level'


def last_request_text(agent: AgentOut, now: datetime | None = None) -> str:
    """`last request 2 min ago · gpt-4o · $0.0072`"""
    parts = [f'last request {ago(agent["last_request_at"], now)}']
    if agent.get('last_model'):
        parts += [str(agent['last_model']), format_usd(agent['last_cost_micros'])]
    return ' · '.join(parts)


class AgentCard(ui.card):
    """An agent's card. Its "last request ... ago" line moves on in place (`last_request`): a card is rebuilt only
    when its agent's data changes, not each time a minute passes."""

    last_request: ui.label


def agent_card(agent: AgentOut, warn_micros: int, alert_micros: int, now: datetime | None = None,
               on_pause: Callable[[str, bool], Any] | None = None, editable: bool = True,
               today_micros: int | None = None, on_detail: Callable[[str], Any] | None = None) -> AgentCard:
    """`on_pause(agent_id, paused)` adds a Pause/Resume button (disabled when not `editable`); `today_micros` what
    the agent spent today; `on_detail(agent_id)` a button that opens the agent's detail."""
    level = session_cost_level(agent['session_cost_micros'], warn_micros, alert_micros)
    style = LEVELS[level]
    average = agent['avg_cost_per_request_micros']
    with AgentCard().tight().classes(f'w-full border-l-4 {style.edge}').mark(f'agent-card-{agent["id"]}') as card:
        card.props['data-level'] = level
        card.props['data-agent'] = agent['id']
        with ui.row().classes(f'w-full items-center justify-between no-wrap px-3 py-2 gap-2 {style.tint}'):
            ui.label(agent['id']).classes('text-subtitle1 font-medium ellipsis min-w-0')
            with ui.row().classes('items-center gap-1 no-wrap'):
                ui.badge(style.word, color=style.chip, text_color=style.chip_text).mark('agent-level') \
                    .tooltip(level_tip(level, agent['session_cost_micros'], warn_micros, alert_micros))
                if average > HIGH_COST_PER_REQUEST_MICROS:
                    ui.badge('high cost', color='red').props('outline').mark('high-cost')
                paused = bool(agent.get('paused'))
                if paused:
                    ui.badge('paused', color='orange').mark('agent-paused')
                if on_detail is not None:
                    ui.button(icon='insights', on_click=lambda: on_detail(agent['id']), color=None) \
                        .props('flat dense round size=sm').mark(f'detail-{agent["id"]}') \
                        .tooltip('Token efficiency by model')
                if on_pause is not None:
                    button = ui.button('Resume' if paused else 'Pause', icon='play_arrow' if paused else 'pause',
                                       on_click=lambda: on_pause(agent['id'], not paused), color=None) \
                        .props('flat dense size=sm').mark(f'pause-{agent["id"]}')  # the text's colour: light or dark
                    if not editable:
                        lock(button)
        with ui.column().classes('w-full gap-1 px-3 pb-3 pt-1'):
            if today_micros is not None:
                ui.label(f'Today: {format_usd(today_micros)}').mark('agent-today')
            ui.label(f'Tokens this session: {agent["session_tokens"]:,} | '
                     f'Cost: {format_usd(agent["session_cost_micros"])}').mark('agent-session')
            with ui.row().classes('items-center gap-1'):
                ui.label(f'Cost/Request: {format_usd(average)} {TREND_ARROWS[agent["trend"]]}').mark('agent-rate')
                recent = plural(agent['recent_requests'], 'request')
                ui.tooltip(f'Avg cost/request: {format_usd(average)} (last {recent})')
            card.last_request = ui.label(last_request_text(agent, now)).classes('text-caption opacity-80') \
                .mark('agent-last')
    return card


class CardGrid:
    """A grid of cards by id. `show` builds only the cards that are new or whose content changed, moves the others
    into the new order and drops the rest: an unchanged card keeps its element, so nothing of it is sent again."""

    def __init__(self, empty: str) -> None:
        self.empty = ui.label(empty).classes('text-grey')
        self.grid = ui.element('div').classes('grid grid-cols-1 sm:grid-cols-2 lg:grid-cols-3 gap-4 w-full')
        self.cards: dict[str, tuple[object, ui.element]] = {}  # id -> (the content it was built from, the card)

    def show(self, cards: Sequence[tuple[str, object, Callable[[], ui.element]]]) -> None:
        """`cards` in order: (id, its content, which compares equal when the card would look the same, and how to
        build it)."""
        ids = {card_id for card_id, _, _ in cards}
        for card_id in [i for i in self.cards if i not in ids]:
            self.cards.pop(card_id)[1].delete()
        for index, (card_id, content, build) in enumerate(cards):
            shown = self.cards.get(card_id)
            if shown is None or shown[0] != content:
                if shown is not None:
                    shown[1].delete()
                with self.grid:
                    shown = self.cards[card_id] = (content, build())
            if list(self.grid).index(shown[1]) != index:
                shown[1].move(target_index=index)
        self.empty.set_visibility(not cards)
        self.grid.set_visibility(bool(cards))

    def card(self, card_id: str) -> ui.element:
        return self.cards[card_id][1]


def pause_explained(agent_id: str) -> str:
    """What pausing does (services/commands/agents.py and the checker), and what it does not."""
    return (f'Every budget check for {agent_id} answers "block" until it is resumed: POST /api/v1/check, the SDK\'s '
            'guard, and the LiteLLM callback where it enforces. Calls already running, and calls made without a '
            'check, are not stopped; they are still recorded.')


class PauseDialog:
    """Asks before an agent is paused. One for the page, outside the cards, so a live update that rebuilds the
    cards neither closes it nor changes which agent it names."""

    def __init__(self, on_confirm: Callable[[str], Any]) -> None:
        self.on_confirm = on_confirm
        self.agent_id: str | None = None
        with ui.dialog().mark('pause-dialog') as self.dialog, ui.card().classes('gap-3 max-w-md'):
            self.title = ui.label().classes('text-h6').mark('pause-title')
            self.text = ui.label().classes('text-body2').mark('pause-text')
            with ui.row().classes('w-full justify-end gap-2'):
                ui.button('Cancel', on_click=self.dialog.close).props('flat').mark('pause-cancel')
                self.confirm = ui.button(icon='pause', on_click=self._confirm, color='negative').mark('pause-confirm')

    def ask(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.title.set_text(f'Pause {agent_id}?')
        self.text.set_text(pause_explained(agent_id))
        self.confirm.set_text(f'Pause {agent_id}')
        self.dialog.open()

    async def _confirm(self) -> None:
        agent_id, self.agent_id = self.agent_id, None
        self.dialog.close()
        if agent_id is not None:
            result = self.on_confirm(agent_id)
            if isawaitable(result):
                await result


def task_card(task: TaskOut) -> ui.card:
    estimate, actual = task.get('estimated_cost_micros'), task['actual_cost_micros']
    estimate_text, actual_text = format_usd_all([estimate or 0, actual])
    with ui.card().classes('w-full gap-1').mark(f'task-card-{task["id"]}') as card:
        with ui.row().classes('w-full items-center justify-between no-wrap'):
            ui.label(task['title']).classes('text-subtitle1 font-medium min-w-0 break-words')
            ui.badge(task['status'], color=STATUS_COLOURS.get(task['status'], 'grey')).props('outline')
        ui.label(task.get('agent_id') or 'unassigned').classes('text-caption text-grey')
        with ui.row().classes('gap-2'):
            ui.badge(f'est. {estimate_text}' if estimate is not None else 'no estimate',
                     color='grey').mark('task-estimate')
            over = estimate is not None and actual > estimate
            colour = 'grey' if estimate is None else 'red' if over else 'green'
            ui.badge(f'actual {actual_text}', color=colour).mark('task-actual').props(f'data-over={over}')
    return card
