"""The usage explorer's events: a table on wider screens, cards on a phone; a row or card opens the event."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from nicegui import ui

from components.sessions_table import local_time, opens
from services.core.display import format_usd, format_usd_all
from services.usage.ledger import EventOut

COLUMNS = [
    {'name': 'time', 'label': 'Time', 'field': 'time', 'align': 'left'},
    {'name': 'agent', 'label': 'Agent', 'field': 'agent', 'align': 'left'},
    {'name': 'model', 'label': 'Model', 'field': 'model', 'align': 'left'},
    {'name': 'tokens', 'label': 'Tokens in / out', 'field': 'tokens', 'align': 'right'},
    {'name': 'cost', 'label': 'Cost', 'field': 'cost', 'align': 'right'},
    {'name': 'source', 'label': 'Cost source', 'field': 'source', 'align': 'left'},
]
_OPENS = opens("'Open event ' + props.row.event_id")
ROW_SLOT = """<q-tr :props="props" class="cursor-pointer" OPENS>
  <q-td v-for="col in props.cols" :key="col.name" :props="props">{{ col.value }}</q-td>
</q-tr>""".replace('OPENS', _OPENS)
CARD_SLOT = """<div class="col-12 q-pb-sm">
  <q-card flat bordered class="cursor-pointer q-hoverable" OPENS>
    <span class="q-focus-helper"></span>
    <q-card-section class="row no-wrap items-center q-py-sm q-px-md">
      <div class="col" style="min-width: 0">
        <div style="overflow-wrap: anywhere"><span>{{ props.row.agent }}</span> ·
          <span>{{ props.row.model }}</span></div>
        <div class="text-caption text-grey">{{ props.row.time }} · {{ props.row.tokens }} tokens ·
          {{ props.row.source }}</div>
      </div>
      <div class="text-subtitle1 text-weight-medium q-pl-sm">{{ props.row.cost }}</div>
    </q-card-section>
  </q-card>
</div>""".replace('OPENS', _OPENS)


def usage_rows(items: list[EventOut], zone: ZoneInfo) -> list[dict[str, Any]]:
    """One row per event; the costs on one number of places, so the column reads down."""
    costs = format_usd_all([item['cost_micros'] for item in items])
    return [{'id': item['id'], 'event_id': item['event_id'], 'time': local_time(item['ts'], zone),
             'agent': item['agent_id'] or '(no agent)', 'model': f'{item["provider"]}/{item["model"]}',
             'tokens': f'{item["input_tokens"]:,} / {item["output_tokens"]:,}', 'cost': cost,
             'source': item['cost_source']}
            for item, cost in zip(items, costs, strict=True)]


def usage_table(on_open: Callable[[int], Any]) -> ui.table:
    table = ui.table(columns=COLUMNS, rows=[], row_key='id').classes('w-full')
    table.props('flat bordered dense wrap-cells :grid="Quasar.Screen.lt.md" no-data-label="No events match"')
    table.add_slot('body', ROW_SLOT)
    table.add_slot('item', CARD_SLOT)
    table.on('open', lambda e: on_open(int(e.args)))
    return table.mark('usage-table')


def event_details(item: EventOut, zone: ZoneInfo) -> list[tuple[str, str]]:
    """(label, value) for the event's dialog: where it came from, who made it, its tokens by kind and its cost."""
    cost = format_usd(item['cost_micros'])
    how = {'priced': 'priced by SpendGauge from the tokens', 'reported': 'as reported by the caller',
           'unpriced': 'no price known for the model: counted as $0'}.get(item['cost_source'], item['cost_source'])
    pairs = [('Time', local_time(item['ts'], zone)), ('Event id', item['event_id']),
             ('Source', f'{item["source"]} via {item["channel"]}'), ('Model', f'{item["provider"]}/{item["model"]}'),
             ('Agent', item['agent_id'] or ''), ('Session', item['session_id'] or ''), ('Task', item['task_id'] or ''),
             ('User', item['user_id'] or ''), ('Project', item['project'] or ''), ('Tags', ', '.join(item['tags'])),
             ('Input tokens', f'{item["input_tokens"]:,}'), ('Output tokens', f'{item["output_tokens"]:,}'),
             ('Cache read tokens', f'{item["cache_read_tokens"]:,}'),
             ('Cache write tokens', f'{item["cache_write_tokens"]:,}'), ('Kind', item['kind'] or ''),
             ('Used', units_text(item['units'])), ('Cost', f'{cost} ({how})'),
             ('Latency', f'{item["latency_ms"]:,} ms' if item['latency_ms'] is not None else '')]
    if item['metadata']:
        pairs.append(('Metadata', orjson.dumps(item['metadata'], option=orjson.OPT_INDENT_2).decode()))
    return [(label, value) for label, value in pairs if value]


def units_text(units: dict[str, Any] | None) -> str:
    """What a call used beyond text tokens, in words: '2 images (1024x1792, hd); 8.47 s of audio; 1,234 characters;
    audio tokens: 10,000 in, 6,000 out'."""
    if not units:
        return ''
    parts = []
    if images := units.get('images'):
        detail = ', '.join(str(images[k]) for k in ('size', 'quality') if images.get(k))
        parts.append(f'{images["count"]:,} image{"s" if images["count"] != 1 else ""}' + (f' ({detail})' if detail
                                                                                            else ''))
    if units.get('audio_seconds') is not None:
        parts.append(f'{units["audio_seconds"]:,} s of audio')
    if units.get('characters'):
        parts.append(f'{units["characters"]:,} characters')
    for what in ('audio', 'image'):
        sides = [f'{units[f"{what}_{side}_tokens"]:,} {label}' for side, label in (('input', 'in'), ('output', 'out'))
                 if units.get(f'{what}_{side}_tokens')]
        if sides:
            parts.append(f'{what} tokens: {", ".join(sides)}')
    return '; '.join(parts)
