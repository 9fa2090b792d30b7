"""Spend sources on the dashboard: each puller's last sync, and the last 30 days reconciled."""
from __future__ import annotations

from typing import Any, NamedTuple

from nicegui import ui

from components.shared import per_snapshot
from services.accounts.refusals import RefusedRequest
from services.core.display import format_usd, format_usd_sum, usd_places
from services.sources.sync import SourceStatus
from services.spend.reconciliation import ReconciledDay

SOURCE_LABELS = {'litellm': 'LiteLLM proxy', 'openai_direct': 'OpenAI billing', 'anthropic_direct': 'Anthropic billing',
                 'openrouter_direct': 'OpenRouter'}
CLIENT_LABELS = {'litellm_callback': 'LiteLLM callback', 'sdk': 'SpendGauge SDK', 'other': 'Other clients'}
RECONCILIATION_COLUMNS = [
    {'name': 'day', 'label': 'Day', 'field': 'day', 'align': 'left'},
    {'name': 'provider', 'label': 'Provider', 'field': 'provider', 'align': 'left'},
    {'name': 'litellm', 'label': 'Via LiteLLM', 'field': 'litellm', 'align': 'right'},
    {'name': 'billed', 'label': 'Billed', 'field': 'billed', 'align': 'right'},
    {'name': 'direct', 'label': 'Direct', 'field': 'direct', 'align': 'right'},
    {'name': 'total', 'label': 'Total', 'field': 'total', 'align': 'right'},
    {'name': 'gap', 'label': 'Gap', 'field': 'gap', 'align': 'right'},
]


def source_line(status: SourceStatus) -> str:
    """'OpenAI billing: synced 2026-11-29 10:15 UTC' / '... last error: auth: the key was refused (401)'."""
    label = SOURCE_LABELS.get(status['source'], status['source'])
    if not status['configured']:
        return f'{label}: off (no key configured)'
    success_at, error_at = status['last_success_at'], status['last_error_at']
    parts = [f'{label}: ' + (f'synced {success_at[:16].replace("T", " ")} UTC' if success_at else 'never synced')]
    if status['last_error'] and (not success_at or (error_at is not None and error_at > success_at)):
        parts.append(f'last error: {status["last_error"]}')
    return ' · '.join(parts)


class RefusalLine(NamedTuple):
    text: str
    resolved: bool  # a request of the client passed after its last refusal


def refusal_lines(items: list[RefusedRequest]) -> list[RefusalLine]:
    """One line per client whose requests were refused for their token, the latest refusal's route and reason:
    'LiteLLM callback: token refused 12 times, last 17:02 UTC (POST /api/v1/usage/batch: the bearer token is not
    valid ...)', ending in '· accepted again 17:05 UTC' once a request of it passed after that."""
    latest: dict[str, RefusedRequest] = {}
    counts: dict[str, int] = {}
    for item in items:  # the most recently refused first
        latest.setdefault(item['client'], item)
        counts[item['client']] = counts.get(item['client'], 0) + item['count']
    lines = []
    for client, item in latest.items():
        times = 'once' if counts[client] == 1 else f'{counts[client]} times'
        line = (f'{CLIENT_LABELS.get(client, client)}: token refused {times}, last {_utc(item["last_at"])} '
                f'({item["route"]}: {item["reason"]})')
        if item['accepted_at']:
            line += f' · accepted again {_utc(item["accepted_at"])}'
        lines.append(RefusalLine(line, item['accepted_at'] is not None))
    return lines


def _utc(iso: str) -> str:
    return f'{iso[:16].replace("T", " ")} UTC'


@per_snapshot
def reconciliation_rows(items: list[ReconciledDay]) -> list[dict[str, Any]]:
    """One number of places for the table; each day's via LiteLLM and direct add up to its total as displayed."""
    places = usd_places(*(i[k] or 0 for i in items for k in ('litellm_micros', 'billed_micros', 'direct_micros',
                                                             'total_micros', 'gap_micros')))
    rows = []
    for i in items:
        (litellm, direct), total = format_usd_sum([i['litellm_micros'], i['direct_micros']], places=places)
        billed, gap = i['billed_micros'], i['gap_micros']
        rows.append({'key': f'{i["day"]}/{i["provider"]}', 'day': i['day'], 'provider': i['provider'],
                     'litellm': litellm, 'billed': format_usd(billed, places) if billed is not None else '—',
                     'direct': direct, 'total': total,
                     'gap': ('⚠ ' if i['gap_alert'] else '') + (format_usd(gap, places) if gap else '')})
    return rows


class ReconciliationPanel:
    """The last 30 days reconciled, in a closed expansion: its table is filled when opened and kept current only
    while open. A closed panel costs a tab nothing per update (filled, the table is ~30 KB on every new call)."""

    def __init__(self, items: list[ReconciledDay]) -> None:
        self.items = items
        self.expansion = ui.expansion('Reconciliation, last 30 days: via LiteLLM, billed, direct',
                                      on_value_change=self._opened_or_closed).classes('w-full').mark('reconciliation')
        with self.expansion:
            self.table = ui.table(columns=RECONCILIATION_COLUMNS, rows=[], row_key='key', pagination=10) \
                .props('flat dense').classes('w-full').mark('reconciliation-table')

    def show(self, items: list[ReconciledDay]) -> None:
        self.items = items
        if self.expansion.value:
            self._fill()

    def _opened_or_closed(self) -> None:
        if self.expansion.value:
            self._fill()

    def _fill(self) -> None:
        rows = reconciliation_rows(self.items)
        if self.table.rows is not rows:
            self.table.rows = rows
            self.table.update()
