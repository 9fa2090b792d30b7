"""Every CSV and Markdown writer over hostile input, end to end: sessions.csv, the reports' CSV and Markdown (API,
pages and `spendgauge report` serve these same files), and `spendgauge get-usage --format csv`. All of them go
through services/core/export.py; none may hand a spreadsheet a formula or Markdown a link, an image or HTML."""
from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from services.core.export import FORMULA_START, PLAIN_NUMBER, csv_cell, csv_text, md_escape, neutralise
from tests.support.api import at, event, own_day, record_batch, uid
from tests.support.cli import cli, ok
from tests.support.servers import Server

HOSTILE = ['=HYPERLINK("http://x")', '@SUM(1)', '+1+2', '-1+2', '[x](http://evil)', '![i](http://evil/p.png)',
           '<img src=x onerror=alert(1)>', '`code`', '*bold* _em_', 'a|b']


def hostile_ids(tag: str) -> list[str]:
    """The hostile names, each made unique (the suffix keeps the start, which is what matters)."""
    return [f'{name}{tag}' for name in HOSTILE]


def assert_safe_csv(text: str, names: list[str]) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text, newline='')))
    for row in rows:
        for cell in row:
            assert not cell.lstrip(' ').startswith(FORMULA_START) or PLAIN_NUMBER.fullmatch(cell), (cell, row)
    cells = {cell for row in rows for cell in row} | {part for row in rows for c in row for part in c.split(' ')}
    for name in names:
        expected = "'" + name if name.startswith(FORMULA_START) else name
        assert expected in cells, (name, text)
    return rows


UNESCAPED = re.compile(r'(?<!\\)[\[\]()!<>`*]')


def assert_safe_markdown(text: str, names: list[str]) -> None:
    for name in names:
        assert md_escape(name) in text, (name, text)
    without_escapes = re.sub(r'\\.', '', text)
    assert not UNESCAPED.search(without_escapes), [line for line in text.splitlines() if UNESCAPED.search(
        re.sub(r'\\.', '', line))]


def test_every_writer_neutralises_hostile_ids(api: httpx.Client, server: Server, tmp_path: Path) -> None:
    tag = uid('')
    agents, sessions = hostile_ids(tag), hostile_ids(tag + 's')
    today = datetime.now(UTC)
    record_batch(api, [event(agent_id=a, session_id=s, ts=today, cost_usd='0.01')
                       for a, s in zip(agents, sessions, strict=True)])
    day = own_day()
    record_batch(api, [event(agent_id=a, ts=at(day, 9), cost_usd='0.02') for a in agents])

    sessions_csv = api.get('/sessions.csv', params={'limit': 100})
    assert sessions_csv.status_code == 200, sessions_csv.text
    assert_safe_csv(sessions_csv.text, sessions + agents)

    for kind, params in (('summary', {'from': day.isoformat(), 'to': day.isoformat(), 'group_by': 'agent'}),
                         ('comparison', {'period': 'day', 'group_by': 'agent'})):
        report_csv = api.get(f'/reports/{kind}', params={**params, 'format': 'csv'})
        assert report_csv.status_code == 200, report_csv.text
        assert_safe_csv(report_csv.text, agents)
        report_md = api.get(f'/reports/{kind}', params={**params, 'format': 'md'})
        assert report_md.status_code == 200, report_md.text
        assert_safe_markdown(report_md.text, agents)

    usage_csv = ok(cli('get-usage', 'day', '--by', 'agent', '--format', 'csv', '--url', server.url, cwd=tmp_path))
    assert_safe_csv(usage_csv.stdout, agents)


@pytest.mark.parametrize('value', [-12, 0, 7, '-12.50', '0.000000'])
def test_numbers_stay_numbers(value: int | str) -> None:
    """Numbers we write, and text that is wholly a plain decimal number, cannot hold a formula: left as they are."""
    assert csv_cell(value) == str(value)


@pytest.mark.parametrize('value', [*HOSTILE[:4], '\tx', '\rx', '  =1', '-', '-1e5'])
def test_formula_text_gets_a_quote(value: str) -> None:
    assert neutralise(value) == "'" + value
    assert csv_cell(value) == "'" + value.replace('\r', '\n')  # a bare CR inside a cell is written as a line feed
    assert list(csv.reader(io.StringIO(csv_text(['name'], [[value]]), newline='')))[1:] == [[csv_cell(value)]]


def test_markdown_escapes_read_back() -> None:
    for value in [*HOSTILE, 'back\\slash']:
        escaped = md_escape(value)
        assert re.sub(r'\\(.)', r'\1', escaped) == value
        assert not UNESCAPED.search(re.sub(r'\\.', '', escaped)), escaped
    assert md_escape('two\nlines') == 'two lines'
