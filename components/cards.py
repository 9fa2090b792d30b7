"""Agent and task cards: plain data in (as the API returns it), cards out."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from nicegui import ui

from components.layout import lock
from services.core.money import MICROS_PER_USD, format_usd
from services.spend.agents import AgentOut
from services.spend.tasks import TaskOut

TREND_ARROWS = {'up': '↗', 'down': '↘', 'flat': '→'}
HIGH_COST_PER_REQUEST_MICROS = 50_000  # $0.05
STATUS_COLOURS = {'pending': 'grey', 'running': 'blue', 'done': 'green', 'failed': 'red', 'cancelled': 'grey'}


def short_usd(micros: int) -> str:
    """`$0.008`, `$0.0725`, `$0.30`, `$1.25`: cents from a dollar up, up to four places below it."""
    if abs(micros) >= MICROS_PER_USD:
        return format_usd(micros)
    whole, fraction = f'{Decimal(micros) / MICROS_PER_USD:.4f}'.split('.')
    return f'${whole}.{fraction.rstrip("0").ljust(2, "0")}'


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


_LEVEL_CLASSES = {'green': 'border-l-4 border-green-500', 'yellow': 'border-l-4 border-amber-400',
                  'red': 'border-l-4 border-red-500'}


def agent_card(agent: AgentOut, warn_micros: int, alert_micros: int, now: datetime | None = None,
               on_pause: Callable[[str, bool], Any] | None = None, editable: bool = True) -> ui.card:
    """`on_pause(agent_id, paused)` adds a Pause/Resume button (disabled when not `editable`)."""
    level = session_cost_level(agent['session_cost_micros'], warn_micros, alert_micros)
    average = agent['avg_cost_per_request_micros']
    with ui.card().classes(f'w-full gap-1 {_LEVEL_CLASSES[level]}').mark(f'agent-card-{agent["id"]}') as card:
        card.props['data-level'] = level
        card.props['data-agent'] = agent['id']
        with ui.row().classes('w-full items-center justify-between no-wrap'):
            ui.label(agent['id']).classes('text-subtitle1 font-medium ellipsis')
            with ui.row().classes('items-center gap-1 no-wrap'):
                if average > HIGH_COST_PER_REQUEST_MICROS:
                    ui.badge('high cost', color='red').props('outline').mark('high-cost')
                paused = bool(agent.get('paused'))
                if paused:
                    ui.badge('paused', color='orange').mark('agent-paused')
                if on_pause is not None:
                    button = ui.button('Resume' if paused else 'Pause', icon='play_arrow' if paused else 'pause',
                                       on_click=lambda: on_pause(agent['id'], not paused)) \
                        .props('flat dense size=sm').mark(f'pause-{agent["id"]}')
                    if not editable:
                        lock(button)
        ui.label(f'Tokens this session: {agent["session_tokens"]:,} | '
                 f'Cost: {short_usd(agent["session_cost_micros"])}').mark('agent-session')
        with ui.row().classes('items-center gap-1'):
            ui.label(f'Cost/Request: {short_usd(average)} {TREND_ARROWS[agent["trend"]]}').mark('agent-rate')
            ui.tooltip(f'Avg cost/request: {short_usd(average)} (last {agent["recent_requests"]} requests)')
        ui.label(f'last request {ago(agent["last_request_at"], now)}').classes('text-caption text-grey')
    return card


def task_card(task: TaskOut) -> ui.card:
    estimate, actual = task.get('estimated_cost_micros'), task['actual_cost_micros']
    with ui.card().classes('w-full gap-1').mark(f'task-card-{task["id"]}') as card:
        with ui.row().classes('w-full items-center justify-between no-wrap'):
            ui.label(task['title']).classes('text-subtitle1 font-medium min-w-0 break-words')
            ui.badge(task['status'], color=STATUS_COLOURS.get(task['status'], 'grey')).props('outline')
        ui.label(task.get('agent_id') or 'unassigned').classes('text-caption text-grey')
        with ui.row().classes('gap-2'):
            ui.badge(f'est. {short_usd(estimate)}' if estimate is not None else 'no estimate',
                     color='grey').mark('task-estimate')
            over = estimate is not None and actual > estimate
            colour = 'grey' if estimate is None else 'red' if over else 'green'
            ui.badge(f'actual {short_usd(actual)}', color=colour).mark('task-actual').props(f'data-over={over}')
    return card
