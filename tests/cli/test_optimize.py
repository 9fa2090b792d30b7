"""`spendgauge optimize` as a real subprocess, through a real server (`--url`) and on its database (`--db`)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import assert_one_line_error, assert_usage_error, cli, ok
from tests.support.servers import Server, free_port, start_server

SUBSTITUTES = 'openai:gpt-4o-mini'
DAY = '2025-06-10'


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp('optimize-cli'), SPENDGAUGE_OPTIMIZE_SUBSTITUTES=SUBSTITUTES)
    events = [{'event_id': f'o{n}', 'agent_id': agent, 'provider': 'openai', 'model': 'gpt-4o',
               'ts': f'{DAY}T1{n}:00:00+00:00', 'input_tokens': 20_000, 'output_tokens': 1_000}
              for n, agent in enumerate(('coder', 'coder', 'writer'))]
    with srv.client() as client:
        assert client.post('/usage/batch', json={'events': events}).json()['stored'] == 3
    yield srv
    srv.stop()


def test_both_backends_print_the_same_table_and_json(server: Server, tmp_path: Path) -> None:
    args = ('optimize', '--from', DAY, '--to', DAY)
    env = {'SPENDGAUGE_OPTIMIZE_SUBSTITUTES': SUBSTITUTES, 'SPENDGAUGE_URL': f'http://127.0.0.1:{free_port()}'}
    http = ok(cli(*args, '--url', server.url, cwd=tmp_path)).stdout
    direct = ok(cli(*args, '--db', server.database_url, cwd=tmp_path, **env)).stdout
    assert http == direct
    lines = http.splitlines()
    assert lines[0].startswith('custom 2025-06-10T00:00:00+00:00 .. 2025-06-11T00:00:00+00:00')
    assert lines[1].split()[:4] == ['agent', '/', 'model', '/']
    # 2 calls of 20,000 in and 1,000 out on gpt-4o: $0.12; on gpt-4o-mini $0.0072, saving $0.1128 (94.0 %)
    coder = next(line for line in lines if line.startswith('coder: all models'))
    assert '$0.120000' in coder
    mini = lines[lines.index(coder) + 1:]
    assert any('→ openai/gpt-4o-mini' in line and '$0.007200' in line and '$0.112800' in line and '94.0%' in line
               for line in mini), http
    assert lines[-1].startswith('Cost only:')
    as_json = json.loads(ok(cli(*args, '--agent', 'writer', '--json', '--url', server.url, cwd=tmp_path)).stdout)
    with server.client() as client:
        assert as_json == client.get('/optimize', params={'from': DAY, 'to': DAY, 'agent_id': 'writer'}).json()
    assert [a['agent_id'] for a in as_json['agents']] == ['writer']


def test_bad_arguments_are_one_line_errors(server: Server, tmp_path: Path) -> None:
    assert 'give both --from and --to' in assert_one_line_error(
        cli('optimize', '--from', DAY, '--url', server.url, cwd=tmp_path), 2)
    assert 'to must be after from' in assert_one_line_error(
        cli('optimize', '--from', DAY, '--to', '2025-06-01', '--url', server.url, cwd=tmp_path), 2)
    assert 'to must be after from' in assert_one_line_error(
        cli('optimize', '--from', DAY, '--to', '2025-06-01', '--db', server.database_url, cwd=tmp_path), 2)
    assert_usage_error(cli('optimize', '--period', 'year', '--url', server.url, cwd=tmp_path), 'period')
    assert 'SPENDGAUGE_OPTIMIZE_SUBSTITUTES' in assert_one_line_error(
        cli('optimize', '--db', server.database_url, cwd=tmp_path, SPENDGAUGE_OPTIMIZE_SUBSTITUTES='gpt-4o'), 2)
