"""The recent-sessions table and a session's per-agent breakdown."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nicegui import ui

from components.cards import short_usd

COLUMNS = [
    {'name': 'id', 'label': 'Session ID', 'field': 'id', 'align': 'left'},
    {'name': 'start', 'label': 'Start', 'field': 'start', 'align': 'left'},
    {'name': 'end', 'label': 'End', 'field': 'end', 'align': 'left'},
    {'name': 'tokens', 'label': 'Tokens', 'field': 'tokens', 'align': 'right'},
    {'name': 'cost', 'label': 'Cost', 'field': 'cost', 'align': 'right'},
    {'name': 'agents', 'label': 'Agents', 'field': 'agents', 'align': 'left'},
]
BREAKDOWN_COLUMNS = [
    {'name': 'agent', 'label': 'Agent', 'field': 'agent', 'align': 'left'},
    {'name': 'requests', 'label': 'Requests', 'field': 'requests', 'align': 'right'},
    {'name': 'tokens', 'label': 'Tokens', 'field': 'tokens', 'align': 'right'},
    {'name': 'cost', 'label': 'Cost', 'field': 'cost', 'align': 'right'},
]


def _time(iso: str | None) -> str:
    return iso[:19].replace('T', ' ') if iso else ''


def session_rows(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{'id': s['id'], 'start': _time(s['started_at']),
             'end': _time(s['ended_at']) or f'active (last {_time(s["last_event_at"])[11:]})',
             'tokens': f'{s["tokens"]:,}', 'cost': short_usd(s['cost_micros']), 'agents': ', '.join(s['agents'])}
            for s in sessions]


def breakdown_rows(session: dict[str, Any]) -> list[dict[str, Any]]:
    return [{'agent': a['agent_id'] or '(no agent)', 'requests': a['requests'], 'tokens': f'{a["tokens"]:,}',
             'cost': short_usd(a['cost_micros'])} for a in session['by_agent']]


def sessions_table(sessions: list[dict[str, Any]], on_select: Callable[[str], Any]) -> ui.table:
    table = ui.table(columns=COLUMNS, rows=session_rows(sessions), row_key='id').classes('w-full')
    table.props('flat bordered dense wrap-cells')
    table.on('rowClick', lambda e: on_select(e.args[1]['id']))
    return table.mark('sessions-table')


def breakdown_table(session: dict[str, Any]) -> ui.table:
    return ui.table(columns=BREAKDOWN_COLUMNS, rows=breakdown_rows(session), row_key='agent') \
        .props('flat dense').classes('w-full').mark('session-breakdown')
