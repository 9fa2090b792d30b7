"""`spendgauge report` as a real subprocess, through a real server (`--url`) and on its database (`--db`)."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import assert_one_line_error, assert_usage_error, cli, ok
from tests.support.servers import Server, free_port, start_server

ZONE = 'Asia/Kolkata'
RANGE = ('--from', '2025-06-09', '--to', '2025-06-11')


@pytest.fixture(scope='module')
def reports_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server in a non-UTC zone with spend on 9-11 June 2025 (local days) and the days before."""
    srv = start_server(tmp_path_factory.mktemp('reports'), SPENDGAUGE_TZ=ZONE)
    events = [
        {'event_id': 'r1', 'model': 'gpt-4o', 'provider': 'openai', 'agent_id': 'planner', 'cost_usd': '1.25',
         'ts': '2025-06-09T10:00:00+00:00', 'channel': 'litellm'},
        {'event_id': 'r2', 'model': 'gpt-4o', 'provider': 'openai', 'agent_id': '=HYPERLINK("http://x","y")',
         'cost_usd': '0.50', 'ts': '2025-06-10T18:45:00+00:00'},  # 00:15 on 11 June, local
        {'event_id': 'r3', 'model': 'claude-sonnet-4-5', 'provider': 'anthropic', 'agent_id': 'coder',
         'cost_usd': '2.00', 'ts': '2025-06-07T12:00:00+00:00'},  # the previous three days
    ]
    with srv.client() as client:
        assert client.post('/usage/batch', json={'events': events}).json()['stored'] == 3
    yield srv
    srv.stop()


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    folder = tmp_path / 'cwd'
    folder.mkdir()
    return folder


def both(server: Server, cwd: Path, *args: str) -> tuple[str, str]:
    """The same report through the server and on its database."""
    http = ok(cli('report', *args, '--url', server.url, cwd=cwd)).stdout
    direct = ok(cli('report', *args, '--db', server.database_url, cwd=cwd, SPENDGAUGE_TZ=ZONE,
                    SPENDGAUGE_URL=f'http://127.0.0.1:{free_port()}')).stdout
    return http, direct


@pytest.mark.parametrize(('kind', 'fmt'), [('summary', 'csv'), ('summary', 'md'), ('summary', 'table'),
                                         ('trend', 'json'), ('trend', 'csv'), ('comparison', 'md'),
                                         ('comparison', 'json')])
def test_both_backends_print_the_same_report(reports_server: Server, cwd: Path, kind: str, fmt: str) -> None:
    http, direct = both(reports_server, cwd, kind, *RANGE, '--format', fmt)
    assert http == direct
    with reports_server.client() as client:
        if fmt in ('csv', 'md'):
            served = client.get(f'/reports/{kind}', params={'from': RANGE[1], 'to': RANGE[3], 'format': fmt}).text
            assert http == served
        elif fmt == 'json':
            served = client.get(f'/reports/{kind}', params={'from': RANGE[1], 'to': RANGE[3]}).json()
            assert json.loads(http) == served


def test_summary_csv_figures(reports_server: Server, cwd: Path) -> None:
    http, _ = both(reports_server, cwd, 'summary', *RANGE, '--format', 'csv', '--group-by', 'agent')
    rows = {r['name']: r for r in csv.DictReader(io.StringIO(http, newline=''))}
    assert rows['planner']['cost_usd'] == '1.250000'
    assert rows['\'=HYPERLINK("http://x","y")']['cost_usd'] == '0.500000'
    assert rows['total']['cost_usd'] == '1.750000'
    assert 'coder' not in rows


def test_trend_on_local_days(reports_server: Server, cwd: Path) -> None:
    http, _ = both(reports_server, cwd, 'trend', *RANGE, '--format', 'json')
    body = json.loads(http)
    assert body['parameters']['timezone'] == ZONE
    assert [(r['day'], r['total_usd']) for r in body['rows']] == [
        ('2025-06-09', '1.250000'), ('2025-06-10', '0.000000'), ('2025-06-11', '0.500000')]


def test_comparison_table(reports_server: Server, cwd: Path) -> None:
    http, _ = both(reports_server, cwd, 'comparison', *RANGE, '--group-by', 'agent')
    lines = http.splitlines()
    assert lines[0] == 'Spend 2025-06-09 to 2025-06-11 against 2025-06-06 to 2025-06-08'
    assert lines[1].split() == ['group', 'name', 'current_usd', 'previous_usd', 'change_usd', 'change_percent']
    assert ['agent', 'coder', '0.000000', '2.000000', '-2.000000', '-100.00'] in [line.split() for line in lines]
    assert ['agent', 'planner', '1.250000', '0.000000', '1.250000', 'new'] in [line.split() for line in lines]
    assert 'change: $-0.250000' in lines


def test_projection_through_both_backends(reports_server: Server, cwd: Path) -> None:
    http, direct = both(reports_server, cwd, 'projection', '--format', 'csv')
    for text in (http, direct):
        rows = list(csv.DictReader(io.StringIO(text, newline='')))
        assert [r['period'] for r in rows] == ['day', 'week', 'month']
        assert rows[0]['limit_usd'] == '5.000000'


def test_output_file(reports_server: Server, cwd: Path) -> None:
    target = cwd / 'out' / 'summary.md'
    target.parent.mkdir()
    result = ok(cli('report', 'summary', *RANGE, '--format', 'md', '--output', str(target), '--url',
                    reports_server.url, cwd=cwd))
    assert result.stdout.strip() == f'summary report (md) written to {target}'
    with reports_server.client() as client:
        assert target.read_text() == client.get('/reports/summary', params={'from': RANGE[1], 'to': RANGE[3],
                                                                            'format': 'md'}).text


def test_unwritable_output_is_one_line(reports_server: Server, cwd: Path) -> None:
    result = cli('report', 'summary', '--output', str(cwd / 'missing' / 'x.csv'), '--url', reports_server.url,
                 cwd=cwd)
    assert 'cannot write' in assert_one_line_error(result, 1)


@pytest.mark.parametrize(('backend', 'args', 'fragment'), [
    ('url', ('summary', '--from', '2025-13-01', '--to', '2025-06-11'), 'from: not an ISO date'),
    ('db', ('summary', '--from', '2025-13-01', '--to', '2025-06-11'), 'from: not an ISO date'),
    ('url', ('comparison', '--from', '2025-06-11', '--to', '2025-06-01', '--format', 'csv'), 'to must be after'),
    ('db', ('trend', '--from', '2025-06-11', '--to', '2025-06-01'), 'to must be after from'),
    ('url', ('projection', *RANGE, '--format', 'md'), 'takes no from/to'),
    ('db', ('projection', *RANGE), 'takes no from/to'),
    ('url', ('trend', '--group-by', 'agent'), 'group_by: must be one of day, week'),
    ('url', ('projection', '--group-by', 'week'), 'takes no group_by'),
    ('url', ('summary', '--from', '2025-06-11'), 'give both --from and --to'),
    ('url', ('summary', '--from', '2005-01-01', '--to', '2025-06-11'), 'at most ten years'),
    ('db', ('trend', '--from', '2005-01-01', '--to', '2025-06-11'), 'at most ten years'),
    ('url', ('summary', '--from', '0001-01-01', '--to', '2025-06-11'), 'from: must be between'),
    ('db', ('comparison', '--from', '2025-06-01', '--to', '9999-12-31'), 'to: must be between')])
def test_bad_usage_is_one_line_and_exit_2(reports_server: Server, cwd: Path, backend: str, args: tuple[str, ...],
                                          fragment: str) -> None:
    where = ('--url', reports_server.url) if backend == 'url' else ('--db', reports_server.database_url)
    line = assert_one_line_error(cli('report', *args, *where, cwd=cwd), 2)
    assert fragment in line, line


def test_unknown_kind_and_format_are_usage_errors(cwd: Path) -> None:
    assert_usage_error(cli('report', 'budget', cwd=cwd), 'invalid choice')
    assert_usage_error(cli('report', 'summary', '--format', 'xlsx', cwd=cwd), 'invalid choice')


@pytest.mark.parametrize('fmt', ['csv', 'table'])
def test_server_not_running(cwd: Path, fmt: str) -> None:
    url = f'http://127.0.0.1:{free_port()}'
    line = assert_one_line_error(cli('report', 'summary', '--format', fmt, '--url', url, cwd=cwd), 1)
    assert f'cannot reach SpendGauge at {url}' in line
