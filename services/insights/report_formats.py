"""A `Report` (services/insights/reports.py) as JSON, CSV, Markdown or a terminal table, all from the same rows.

Money is an exact USD decimal string everywhere (`cost_usd` columns), and in JSON also integer micro-USD
(`cost_micros`). Percentages have two places.

CSV and Markdown go through the shared writer (services/core/export.py): formula cells are neutralised for
spreadsheets, and Markdown escapes link, image, HTML, table and emphasis syntax, so every cell reads back by
removing the backslashes.
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from typing_extensions import TypedDict

from services.core.errors import Invalid
from services.core.export import csv_text, md_escape, neutralise
from services.core.money import micros_to_usd
from services.insights.report_model import DEFAULT_GROUP_BY, DEFAULT_PERIOD, GROUP_BY, KINDS, Column, Report

FORMATS = ('json', 'csv', 'md')
MEDIA_TYPES = {'json': 'application/json', 'csv': 'text/csv; charset=utf-8', 'md': 'text/markdown; charset=utf-8'}
EXTENSIONS = {'json': 'json', 'csv': 'csv', 'md': 'md'}
Cell = str | int | float | None


class ColumnOut(TypedDict):
    name: str
    type: str  # text, int, usd (the row has <name>_micros and <name>_usd), percent (a number, two places)
    header: str  # the column's name in CSV and Markdown
    null_text: str  # how CSV and Markdown show a null


class ReportJson(TypedDict):
    """A report as JSON: rows keyed by the columns' names (a usd column as `<name>_micros` and `<name>_usd`)."""

    kind: str  # summary, trend, comparison, projection
    title: str
    parameters: dict[str, str | bool | None]  # period, start, end, timezone, first_day, last_day, group_by, ...
    columns: list[ColumnOut]
    rows: list[dict[str, Cell]]
    totals: dict[str, int | str]  # money: <name>_micros and <name>_usd


class ReportKind(TypedDict):
    kind: str
    group_by: list[str]  # the groupings it takes (empty: none)
    default_group_by: str | None


class ReportCatalog(TypedDict):
    kinds: list[ReportKind]
    formats: list[str]
    default_period: str


def catalog() -> ReportCatalog:
    """The report kinds, the group_by each takes, and the formats."""
    return {'kinds': [{'kind': kind, 'group_by': list(GROUP_BY[kind]), 'default_group_by': DEFAULT_GROUP_BY.get(kind)}
                      for kind in KINDS],
            'formats': list(FORMATS), 'default_period': DEFAULT_PERIOD}


def header(column: Column) -> str:
    """The column's name in CSV, Markdown and the table: money columns end in `_usd`."""
    return f'{column.name}_usd' if column.kind == 'usd' else column.name


def cell_text(column: Column, value: Any) -> str:
    """The value as text formats show it: exact USD for money, two places for percentages."""
    if value is None:
        return column.null_text
    if column.kind == 'usd':
        return micros_to_usd(int(value))
    if column.kind == 'percent':
        return f'{Decimal(value):.2f}'
    return str(value)


# --- JSON -------------------------------------------------------------------------------------------------------

def to_json(report: Report) -> ReportJson:
    totals: dict[str, int | str] = {}
    for name, micros in report.totals.items():
        totals[f'{name}_micros'], totals[f'{name}_usd'] = micros, micros_to_usd(micros)
    return {'kind': report.kind, 'title': report.title, 'parameters': report.parameters,
            'columns': [{'name': c.name, 'type': c.kind, 'header': header(c), 'null_text': c.null_text}
                        for c in report.columns],
            'rows': [_json_row(report.columns, row) for row in report.rows], 'totals': totals}


def _json_row(columns: list[Column], row: dict[str, Any]) -> dict[str, Cell]:
    result: dict[str, Cell] = {}
    for column in columns:
        value = row[column.name]
        if column.kind == 'usd':
            result[f'{column.name}_micros'] = value
            result[f'{column.name}_usd'] = None if value is None else micros_to_usd(int(value))
        elif column.kind == 'percent':
            result[column.name] = None if value is None else float(value)
        else:
            result[column.name] = value
    return result


def from_json(body: dict[str, Any]) -> Report:
    """The report back from its JSON (the CLI renders a server's report as a table)."""
    columns = [Column(c['name'], c['type'], c.get('null_text') or '') for c in body['columns']]
    rows = []
    for item in body['rows']:
        row: dict[str, Any] = {}
        for c in columns:
            if c.kind == 'usd':
                row[c.name] = item[f'{c.name}_micros']
            elif c.kind == 'percent':
                value = item[c.name]
                row[c.name] = None if value is None else Decimal(str(value)).quantize(Decimal('0.01'))
            else:
                row[c.name] = item[c.name]
        rows.append(row)
    totals = {k.removesuffix('_micros'): v for k, v in body.get('totals', {}).items() if k.endswith('_micros')}
    return Report(body['kind'], body['title'], body['parameters'], columns, rows, totals)


def render_json(report: Report) -> str:
    return json.dumps(to_json(report), indent=2)


# --- CSV --------------------------------------------------------------------------------------------------------

__all__ = ['md_escape', 'neutralise']  # the shared writer's, re-exported for the callers of this module


def render_csv(report: Report) -> str:
    return csv_text([header(c) for c in report.columns],
                    ([cell_text(c, row[c.name]) for c in report.columns] for row in report.rows))


# --- Markdown ---------------------------------------------------------------------------------------------------

def render_md(report: Report) -> str:
    lines = [f'# {md_escape(report.title)}', '']
    lines += [f'- {name}: {md_escape(_param(value))}' for name, value in report.parameters.items()]
    lines.append('')
    lines.append('| ' + ' | '.join(md_escape(header(c)) for c in report.columns) + ' |')
    lines.append('|' + '|'.join(' ---: ' if c.kind != 'text' else ' --- ' for c in report.columns) + '|')
    for row in report.rows:
        lines.append('| ' + ' | '.join(md_escape(cell_text(c, row[c.name])) or ' ' for c in report.columns) + ' |')
    if not report.rows:
        lines.append('| ' + ' | '.join(' ' for _ in report.columns) + ' |')
    if report.totals:
        lines.append('')
        lines += [f'- {name}: {micros_to_usd(micros)} USD' for name, micros in report.totals.items()]
    return '\n'.join(lines) + '\n'


def _param(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


# --- terminal table ---------------------------------------------------------------------------------------------

def render_table(report: Report) -> str:
    """Aligned columns for the terminal, numbers on the right, the money totals below."""
    headers = [header(c) for c in report.columns]
    cells = [[_table_cell(c, row[c.name]) for c in report.columns] for row in report.rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    right = [c.kind != 'text' for c in report.columns]

    def line(values: list[str]) -> str:
        padded = (v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True))
        return '  '.join(padded).rstrip()

    lines = [report.title, line(headers), *(line(r) for r in cells)]
    if not cells:
        lines.append('(no rows)')
    lines += [f'{name}: ${micros_to_usd(micros)}' for name, micros in report.totals.items()]
    return '\n'.join(lines)


def _table_cell(column: Column, value: Any) -> str:
    if column.kind == 'int' and value is not None:
        return f'{int(value):,}'
    return ' '.join(cell_text(column, value).splitlines())


def render(report: Report, fmt: str) -> str:
    if fmt == 'json':
        return render_json(report)
    if fmt == 'csv':
        return render_csv(report)
    if fmt == 'md':
        return render_md(report)
    if fmt == 'table':
        return render_table(report) + '\n'
    raise Invalid(f'format: must be one of {", ".join(FORMATS)}, got {fmt!r}')


def filename(report: Report, fmt: str) -> str:
    return f'{report.filename_stem}.{EXTENSIONS[fmt]}'
