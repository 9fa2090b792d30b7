"""`spendgauge digest` as a real subprocess: the preview through a server (`--url`) and on its database (`--db`), and
`--send-now` both ways, with the alert webhook a real receiver on 127.0.0.1 (and one that is not listening)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.cli import assert_one_line_error, cli, ok
from tests.support.fake_api import FakeAPI, closed_port_url
from tests.support.servers import Server, free_port, start_server

YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).date()


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp('digest-cli'), SPENDGAUGE_TZ='UTC')
    events = [{'event_id': f'dc{n}', 'agent_id': agent, 'provider': 'openai', 'model': 'gpt-4o',
               'ts': f'{YESTERDAY}T1{n}:00:00+00:00', 'input_tokens': 20_000, 'output_tokens': 1_000}
              for n, agent in enumerate(('coder', 'coder', 'writer'))]
    with srv.client() as client:
        assert client.post('/usage/batch', json={'events': events}).json()['stored'] == 3
    yield srv
    srv.stop()


def until_today(text: str) -> str:
    """The lines about the day itself (today's forecast moves with the clock)."""
    return text.split('\nToday (')[0]


def test_both_backends_preview_the_same_digest(server: Server, tmp_path: Path) -> None:
    env = {'SPENDGAUGE_TZ': 'UTC', 'SPENDGAUGE_URL': f'http://127.0.0.1:{free_port()}'}
    http = ok(cli('digest', '--url', server.url, cwd=tmp_path)).stdout
    direct = ok(cli('digest', '--db', server.database_url, cwd=tmp_path, **env)).stdout
    assert until_today(http) == until_today(direct)
    lines = http.splitlines()
    assert lines[0] == f'SpendGauge daily digest for {YESTERDAY} (UTC)'
    # 3 calls of 20,000 in and 1,000 out on gpt-4o at $2.50 and $10 per million: $0.06 each
    assert lines[2] == 'Spent: $0.18 of $5.00 (3.6 % of the day limit), 3 requests'
    assert lines[4].split() == ['coder', '$0.1200', '2', 'requests']
    assert 'Biggest saving: coder on ' in http
    as_json = json.loads(ok(cli('digest', '--format', 'json', '--day', str(YESTERDAY), '--url', server.url,
                                cwd=tmp_path)).stdout)
    assert (as_json['day'], as_json['spent_micros'], as_json['requests']) == (str(YESTERDAY), 180_000, 3)
    html = ok(cli('digest', '--format', 'html', '--db', server.database_url, cwd=tmp_path, **env)).stdout
    assert html.startswith('<!DOCTYPE html>') and '$0.18 of $5.00' in html


def test_bad_days_are_usage_errors(server: Server, tmp_path: Path) -> None:
    future = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    for backend in (('--url', server.url), ('--db', server.database_url)):
        line = assert_one_line_error(cli('digest', '--day', future, *backend, cwd=tmp_path), 2)
        assert 'is in the future' in line
        line = assert_one_line_error(cli('digest', '--send-now', '--day', 'soon', *backend, cwd=tmp_path), 2)
        assert 'not a date' in line


def test_send_now_reports_each_delivery(server: Server, tmp_path: Path) -> None:
    with FakeAPI() as hook:
        hook.route('/hook/secret-part', {'ok': True}, method='POST')
        sent = ok(cli('digest', '--send-now', '--db', server.database_url, cwd=tmp_path, SPENDGAUGE_TZ='UTC',
                      SPENDGAUGE_ALERT_WEBHOOK_URL=f'{hook.url}/hook/secret-part'))
        assert sent.stdout.splitlines() == ['log: delivered (1 attempt)',
                                            f'webhook {hook.url}/…: delivered (1 attempt)']
        assert len(hook.hits('/hook/secret-part')) == 1
    through_server = ok(cli('digest', '--send-now', '--url', server.url, cwd=tmp_path))
    assert through_server.stdout.splitlines() == ['log: delivered (1 attempt)']  # the server has no webhook


def test_a_failed_delivery_says_so_and_exits_1(server: Server, tmp_path: Path) -> None:
    down = closed_port_url()
    result = cli('digest', '--send-now', '--db', server.database_url, cwd=tmp_path, SPENDGAUGE_TZ='UTC',
                 SPENDGAUGE_ALERT_WEBHOOK_URL=f'{down}/hook')
    assert result.returncode == 1, str(result)
    assert result.stdout.splitlines()[0] == 'log: delivered (1 attempt)'
    assert result.stdout.splitlines()[1] == \
        f'webhook {down}/…: pending (1 attempt, failed: cannot connect (ConnectError))'
    assert result.error_lines == ['spendgauge: 1 of 2 deliveries not delivered yet; pending ones are retried with '
                                  'backoff by the server (see GET /api/v1/alerts/deliveries)']
