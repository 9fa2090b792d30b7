"""The Optimise page's table: the optimiser's rows (services/insights/optimize_table.py) as a Quasar table, cards
below 600 px like the reports' table."""
from __future__ import annotations

from typing import Any

from nicegui import ui

from components.report_view import CARD_SLOT
from services.insights.optimize_table import TABLE_COLUMNS

FIELDS = ('what', 'cost', 'saving', 'saving_percent', 'per_day', 'per_month', 'fit')  # TABLE_COLUMNS, as keys


def optimize_columns() -> list[dict[str, Any]]:
    return [{'name': field, 'label': label, 'field': field, 'align': 'left' if field == 'what' else 'right'}
            for field, label in zip(FIELDS, TABLE_COLUMNS, strict=True)]


def optimize_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The table rows keyed by FIELDS, with a key each; the indentation of an agent's models and candidates kept as
    non-breaking spaces (HTML folds plain ones)."""
    result = []
    for index, row in enumerate(rows):
        cells = {field: row[label] for field, label in zip(FIELDS, TABLE_COLUMNS, strict=True)}
        text = cells['what'].lstrip(' ')
        cells['what'] = '\u00a0' * (len(cells['what']) - len(text)) + text
        result.append({'_key': str(index), **cells})
    return result


def optimize_table() -> ui.table:
    table = ui.table(columns=optimize_columns(), rows=[], row_key='_key', pagination=0) \
        .props('flat bordered dense wrap-cells :grid="Quasar.Screen.lt.sm"')
    table.add_slot('item', CARD_SLOT)
    return table.classes('w-full').mark('optimize-table')
