"""The recent sessions (a table on wider screens, a card list on a phone; a row or card opens the session) and a
session's per-agent breakdown."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from nicegui import ui

from services.core.display import format_usd_all, format_usd_sum
from services.spend.sessions import SessionDetail, SessionOut

COLUMNS = [
    {'name': 'id', 'label': 'Session ID', 'field': 'id', 'align': 'left'},
    {'name': 'start', 'label': 'Start', 'field': 'start', 'align': 'left'},
    {'name': 'end', 'label': 'End', 'field': 'end', 'align': 'left'},
    {'name': 'tokens', 'label': 'Tokens', 'field': 'tokens', 'align': 'right'},
    {'name': 'cost', 'label': 'Cost', 'field': 'cost', 'align': 'right'},
    {'name': 'agents', 'label': 'Agents', 'field': 'agents', 'align': 'left'},
    {'name': 'open', 'label': '', 'field': 'id', 'align': 'right'},
]


def opens(aria_label: str) -> str:
    """The attributes that make a table row or grid card a button: Tab reaches it, a click, Enter or Space emits the
    table's `open` event with the row's id; `aria_label` is a JavaScript expression over `props.row`."""
    return f"""tabindex="0" role="button" :aria-label="{aria_label}"
    @click="$parent.$emit('open', props.row.id)" @keydown.enter.space.prevent="$parent.$emit('open', props.row.id)"
"""


# A row or card is a button: pointer, hover, a chevron, Tab to reach it and Enter or Space to open it.
_OPENS = opens("'Open session ' + props.row.id")
ROW_SLOT = """<q-tr :props="props" class="cursor-pointer" OPENS>
  <q-td v-for="col in props.cols" :key="col.name" :props="props">
    <q-icon v-if="col.name === 'open'" name="chevron_right" size="sm" />
    <span v-else-if="col.name === 'id'" class="text-primary">{{ col.value }}</span>
    <template v-else>{{ col.value }}</template>
  </q-td>
</q-tr>""".replace('OPENS', _OPENS)
CARD_SLOT = """<div class="col-12 q-pb-sm">
  <q-card flat bordered class="cursor-pointer q-hoverable" OPENS>
    <span class="q-focus-helper"></span>
    <q-card-section class="row no-wrap items-center q-py-sm q-px-md">
      <div class="col" style="min-width: 0">
        <div class="text-primary" style="overflow-wrap: anywhere">{{ props.row.id }}</div>
        <div>{{ props.row.agents }}</div>
        <div class="text-caption text-grey">{{ props.row.start }} &ndash; {{ props.row.end }} ·
          {{ props.row.tokens }} tokens</div>
      </div>
      <div class="text-subtitle1 text-weight-medium q-pl-sm">{{ props.row.cost }}</div>
      <q-icon name="chevron_right" size="sm" />
    </q-card-section>
  </q-card>
</div>""".replace('OPENS', _OPENS)
BREAKDOWN_COLUMNS = [
    {'name': 'agent', 'label': 'Agent', 'field': 'agent', 'align': 'left'},
    {'name': 'requests', 'label': 'Requests', 'field': 'requests', 'align': 'right'},
    {'name': 'tokens', 'label': 'Tokens', 'field': 'tokens', 'align': 'right'},
    {'name': 'cost', 'label': 'Cost', 'field': 'cost', 'align': 'right'},
]


def local_time(iso: str | None, zone: ZoneInfo) -> str:
    return datetime.fromisoformat(iso).astimezone(zone).strftime('%Y-%m-%d %H:%M:%S') if iso else ''


def session_rows(sessions: list[SessionOut], zone: ZoneInfo) -> list[dict[str, Any]]:
    return [{'id': s['id'], 'start': local_time(s['started_at'], zone),
             'end': local_time(s['ended_at'], zone) or f'active, last call {local_time(s["last_event_at"], zone)[5:]}',
             'tokens': f'{s["tokens"]:,}', 'cost': cost, 'agents': ', '.join(s['agents'])}
            for s, cost in zip(sessions, format_usd_all([s['cost_micros'] for s in sessions]), strict=True)]


def breakdown_costs(session: SessionDetail) -> tuple[list[str], str]:
    """Each agent's cost and the session's, the agents' adding up to the session's as displayed."""
    return format_usd_sum([a['cost_micros'] for a in session['by_agent']])


def breakdown_rows(session: SessionDetail) -> list[dict[str, Any]]:
    costs, _ = breakdown_costs(session)
    return [{'agent': a['agent_id'] or '(no agent)', 'requests': f'{a["requests"]:,}', 'tokens': f'{a["tokens"]:,}',
             'cost': cost} for a, cost in zip(session['by_agent'], costs, strict=True)]


def sessions_table(sessions: list[SessionOut], zone: ZoneInfo, on_select: Callable[[str], Any]) -> ui.table:
    table = ui.table(columns=COLUMNS, rows=session_rows(sessions, zone), row_key='id').classes('w-full')
    table.props('flat bordered dense wrap-cells :grid="Quasar.Screen.lt.md"')  # cards below 1024 px
    table.add_slot('body', ROW_SLOT)
    table.add_slot('item', CARD_SLOT)
    table.on('open', lambda e: on_select(e.args))
    return table.mark('sessions-table')


def breakdown_table(session: SessionDetail) -> ui.table:
    return ui.table(columns=BREAKDOWN_COLUMNS, rows=breakdown_rows(session), row_key='agent') \
        .props('flat dense').classes('w-full').mark('session-breakdown')
