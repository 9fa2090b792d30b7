"""End-to-end tests of the `spendgauge` command line: a real subprocess against a real server (`--url`) or a
database file (`--db`).

The contract (app/cli.py): every failure prints one line to stderr and exits non-zero, 1 for a refused or failed
request and 2 for bad usage. argparse errors print a usage block and an `error:` line (exit 2); never a traceback.
"""
from __future__ import annotations

import csv
import io
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.cli import SPENDGAUGE, assert_one_line_error, assert_usage_error, cli, ok, run
from tests.support.servers import Server, free_port, start_server

# 800 uncached input tokens at $2.50, 200 cache reads at $1.25 and 500 output tokens at $10 per million tokens:
# 0.002 + 0.00025 + 0.005 = $0.007250.
GPT4O_CALL = ('--model', 'gpt-4o', '--provider', 'openai', '--input', '1000', '--cache-read', '200', '--output', '500')
GPT4O_COST_MICROS = 7250
GPT4O_COST_USD = '0.007250'

CHANNELS_LINE = re.compile(r'^Via LiteLLM: \$([\d,.]+) \| Direct: \$([\d,.]+) \| Total: \$([\d,.]+)$')
GAUGE_LINE = re.compile(r'^\[[#.]{30}\] \$([\d,.]+) / \$([\d,.]+) \(([\d.]+)%\)  resets in (\d+ h( \d+ min)?|\d+ min)$')


def agent_id() -> str:
    return f'cli-{uuid.uuid4().hex}'


def parse_gauge(stdout: str) -> tuple[str, str]:
    """(spent, limit) from the gauge line of `status`, after checking both lines of its output."""
    lines = stdout.strip().splitlines()
    assert len(lines) == 2, stdout
    gauge, channels = GAUGE_LINE.match(lines[0]), CHANNELS_LINE.match(lines[1])
    assert gauge, stdout
    assert channels, stdout
    assert channels.group(3) == gauge.group(1), 'Total must equal the spend on the gauge line'
    return gauge.group(1), gauge.group(2)


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """Every command runs in its own folder, so a default ./data/spendgauge.db never lands in the repository."""
    folder = tmp_path / 'cwd'
    folder.mkdir()
    return folder


@pytest.fixture(scope='module')
def recorded(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One gpt-4o call by a fresh agent on the shared server; returns the agent id."""
    agent = agent_id()
    ok(cli('record', '--url', server.url, '--agent', agent, *GPT4O_CALL, cwd=tmp_path_factory.mktemp('cwd')))
    return agent


# --- against the shared server ----------------------------------------------------------------------------------

def test_record_prints_stored_with_the_priced_cost(server: Server, cwd: Path) -> None:
    agent = agent_id()
    result = ok(cli('record', '--url', server.url, '--agent', agent, *GPT4O_CALL, cwd=cwd))
    line = result.stdout.strip()
    assert '\n' not in line
    assert line.startswith('stored: ')
    assert 'openai/gpt-4o 1,000 in / 500 out = $0.007250 (priced)' in line
    assert result.stderr == ''


def test_record_json_has_the_cost_in_micros(server: Server, cwd: Path) -> None:
    agent = agent_id()
    result = ok(cli('record', '--url', server.url, '--agent', agent, *GPT4O_CALL, '--json', cwd=cwd))
    stored = json.loads(result.stdout)
    assert stored['status'] == 'stored'
    assert stored['cost_micros'] == GPT4O_COST_MICROS
    assert stored['cost_usd'] == GPT4O_COST_USD
    assert stored['cost_source'] == 'priced'
    assert (stored['agent_id'], stored['provider'], stored['model']) == (agent, 'openai', 'gpt-4o')
    assert (stored['input_tokens'], stored['cache_read_tokens'], stored['output_tokens']) == (1000, 200, 500)
    assert stored['source'] == 'sdk'
    assert stored['channel'] == 'direct'


def test_the_same_event_id_twice_is_a_duplicate_counted_once(server: Server, cwd: Path) -> None:
    agent, event_id = agent_id(), uuid.uuid4().hex
    first = ok(cli('record', '--url', server.url, '--agent', agent, '--event-id', event_id, *GPT4O_CALL, cwd=cwd))
    second = ok(cli('record', '--url', server.url, '--agent', agent, '--event-id', event_id, *GPT4O_CALL, cwd=cwd))
    assert first.stdout.startswith(f'stored: {event_id} ')
    assert second.stdout.startswith(f'duplicate: {event_id} ')
    assert '$0.007250' in second.stdout

    usage = json.loads(ok(cli('get-usage', 'day', '--by', 'agent', '--format', 'json', '--url', server.url,
                              cwd=cwd)).stdout)
    mine = [item for item in usage['items'] if item['agent'] == agent]
    assert mine == [{'agent': agent, 'requests': 1, 'input_tokens': 1000, 'output_tokens': 500,
                     'cost_usd': GPT4O_COST_USD}]


@pytest.fixture(scope='module')
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the default daily limit ($5; the shared one has none) and one gpt-4o call recorded."""
    srv = start_server(tmp_path_factory.mktemp('limited'))
    ok(cli('record', '--url', srv.url, '--agent', agent_id(), *GPT4O_CALL, cwd=tmp_path_factory.mktemp('cwd')))
    yield srv
    srv.stop()


def test_status_prints_the_gauge_and_the_channel_split(limited: Server, cwd: Path) -> None:
    result = ok(cli('status', '--url', limited.url, cwd=cwd))
    assert '/ $5.00' in result.stdout
    assert 'resets in' in result.stdout
    spent, limit = parse_gauge(result.stdout)
    assert limit == '5.00'
    assert spent != '0.00', "the recorded call must show in today's spend"


def test_status_json_matches_the_recorded_spend(limited: Server, cwd: Path) -> None:
    summary = json.loads(ok(cli('status', '--json', '--url', limited.url, cwd=cwd)).stdout)
    assert summary['period'] == 'day'
    assert summary['limit_micros'] == 5_000_000
    assert summary['limit_usd'] == '5.000000'
    assert summary['spent_micros'] >= GPT4O_COST_MICROS
    assert summary['requests'] >= 1
    channels = summary['by_channel']
    assert channels['litellm']['spent_micros'] + channels['direct']['spent_micros'] == summary['spent_micros']
    assert channels['direct']['spent_micros'] >= GPT4O_COST_MICROS
    assert summary['remaining_micros'] == max(0, 5_000_000 - summary['spent_micros'])
    assert summary['resets_in_s'] > 0


def test_status_for_a_period_without_a_limit(server: Server, recorded: str, cwd: Path) -> None:
    result = ok(cli('status', '--period', 'month', '--url', server.url, cwd=cwd))
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r'\$[\d,.]+ spent this month, no limit set', lines[0]), result.stdout
    assert CHANNELS_LINE.match(lines[1]), result.stdout


def test_get_usage_by_agent_json(server: Server, recorded: str, cwd: Path) -> None:
    data = json.loads(ok(cli('get-usage', 'day', '--by', 'agent', '--format', 'json', '--url', server.url,
                             cwd=cwd)).stdout)
    assert data['period'] == 'day'
    assert data['start'] < data['end']
    row = next(item for item in data['items'] if item['agent'] == recorded)
    assert row == {'agent': recorded, 'requests': 1, 'input_tokens': 1000, 'output_tokens': 500,
                   'cost_usd': GPT4O_COST_USD}


def test_get_usage_by_agent_csv(server: Server, recorded: str, cwd: Path) -> None:
    result = ok(cli('get-usage', 'day', '--by', 'agent', '--format', 'csv', '--url', server.url, cwd=cwd))
    reader = csv.DictReader(io.StringIO(result.stdout))
    assert reader.fieldnames == ['agent', 'requests', 'input_tokens', 'output_tokens', 'cost_usd']
    rows = [row for row in reader if row['agent'] == recorded]
    assert rows == [{'agent': recorded, 'requests': '1', 'input_tokens': '1000', 'output_tokens': '500',
                     'cost_usd': GPT4O_COST_USD}]


def test_get_usage_by_agent_table(server: Server, recorded: str, cwd: Path) -> None:
    result = ok(cli('get-usage', 'week', '--by', 'agent', '--url', server.url, cwd=cwd))
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ['agent', 'requests', 'input_tokens', 'output_tokens', 'cost_usd']
    mine = [line.split() for line in lines if line.startswith(recorded)]
    assert mine == [[recorded, '1', '1,000', '500', GPT4O_COST_USD]]
    assert re.fullmatch(r'total this week: \$\d+\.\d{6}', lines[-1]), result.stdout


@pytest.mark.parametrize('by', ['model', 'provider', 'channel'])
def test_get_usage_by_model_provider_channel_includes_the_call(server: Server, recorded: str, cwd: Path,
                                                               by: str) -> None:
    """The shared server holds other calls too: the row is there and holds at least this call."""
    data = json.loads(ok(cli('get-usage', 'day', '--by', by, '--format', 'json', '--url', server.url,
                             cwd=cwd)).stdout)
    name = {'model': 'gpt-4o', 'provider': 'openai', 'channel': 'direct'}[by]
    row = next(item for item in data['items'] if item[by] == name)
    assert row['requests'] >= 1
    assert row['input_tokens'] >= 1000
    assert Decimal(row['cost_usd']) >= Decimal(GPT4O_COST_USD)
    assert Decimal(data['total_usd']) >= Decimal(row['cost_usd'])


# --- a server of our own: exact totals and limits ---------------------------------------------------------------

@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(_mkdir(tmp_path / 'own'))
    yield srv
    srv.stop()


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_set_limit_then_status_shows_the_new_limit(own_server: Server, cwd: Path) -> None:
    empty = ok(cli('get-usage', 'day', '--url', own_server.url, cwd=cwd))
    assert empty.stdout == '(no usage)\ntotal this day: $0.000000\n'
    before = ok(cli('status', '--url', own_server.url, cwd=cwd))
    assert parse_gauge(before.stdout) == ('0.00', '5.00')
    result = ok(cli('set-limit', 'day', '12.50', '--url', own_server.url, cwd=cwd))
    assert result.stdout.strip() == 'day limit set to $12.50 (warn at 80%, throttle at 95%, block at 100%)'
    after = ok(cli('status', '--url', own_server.url, cwd=cwd))
    assert '/ $12.50' in after.stdout
    assert parse_gauge(after.stdout) == ('0.00', '12.50')
    with own_server.client() as client:
        assert client.get('/budget/limits').json()['day']['limit_micros'] == 12_500_000

    too_much = cli('set-limit', 'day', '2000000000', '--url', own_server.url, cwd=cwd)
    assert too_much.returncode == 2 and 'between 0 and 1,000,000,000' in too_much.stderr
    assert 'Traceback' not in too_much.stderr
    assert '/ $12.50' in ok(cli('status', '--url', own_server.url, cwd=cwd)).stdout, 'the limit must be unchanged'


def test_set_limit_for_the_week_is_used_by_status(own_server: Server, cwd: Path) -> None:
    ok(cli('set-limit', 'week', '$40', '--url', own_server.url, cwd=cwd))
    ok(cli('record', '--url', own_server.url, '--agent', 'w', *GPT4O_CALL, cwd=cwd))
    summary = json.loads(ok(cli('status', '--period', 'week', '--json', '--url', own_server.url, cwd=cwd)).stdout)
    assert (summary['limit_micros'], summary['spent_micros']) == (40_000_000, GPT4O_COST_MICROS)
    assert summary['remaining_micros'] == 40_000_000 - GPT4O_COST_MICROS
    text = ok(cli('status', '--period', 'week', '--url', own_server.url, cwd=cwd)).stdout
    assert '/ $40.00' in text


def test_get_usage_exact_totals_on_a_fresh_server(own_server: Server, cwd: Path) -> None:
    ok(cli('record', '--url', own_server.url, '--agent', 'a1', *GPT4O_CALL, cwd=cwd))
    ok(cli('record', '--url', own_server.url, '--agent', 'a2', '--model', 'gpt-4o', '--provider', 'openai',
           '--input', '2000', '--output', '100', '--channel', 'litellm', cwd=cwd))  # 2000*2.5 + 100*10 = $0.006
    by_model = json.loads(ok(cli('get-usage', 'day', '--format', 'json', '--url', own_server.url, cwd=cwd)).stdout)
    assert by_model['total_usd'] == '0.013250'
    assert by_model['items'] == [{'model': 'gpt-4o', 'requests': 2, 'input_tokens': 3000, 'output_tokens': 600,
                                  'cost_usd': '0.013250'}]
    by_channel = json.loads(ok(cli('get-usage', 'day', '--by', 'channel', '--format', 'json', '--url',
                                   own_server.url, cwd=cwd)).stdout)
    assert {i['channel']: i['cost_usd'] for i in by_channel['items']} == {'direct': '0.007250', 'litellm': '0.006000'}
    status = ok(cli('status', '--url', own_server.url, cwd=cwd)).stdout
    # on the places of the gauge line's $5.00 limit, and adding up: $0.006 + $0.00725 = $0.01325
    assert 'Via LiteLLM: $0.00 | Direct: $0.01 | Total: $0.01' in status
    csv_rows = list(csv.DictReader(io.StringIO(ok(cli('get-usage', 'month', '--by', 'provider', '--format', 'csv',
                                                      '--url', own_server.url, cwd=cwd)).stdout)))
    assert csv_rows == [{'provider': 'openai', 'requests': '2', 'input_tokens': '3000', 'output_tokens': '600',
                         'cost_usd': '0.013250'}]


# --- direct database mode ---------------------------------------------------------------------------------------

@pytest.fixture
def db(tmp_path: Path) -> str:
    return f'sqlite:///{tmp_path / "x.db"}'


@pytest.fixture
def nowhere() -> dict[str, str]:
    """SPENDGAUGE_URL pointing at a closed port: --db must not need a server."""
    return {'SPENDGAUGE_URL': f'http://127.0.0.1:{free_port()}'}


def test_direct_record_and_read_back(db: str, cwd: Path, nowhere: dict[str, str]) -> None:
    first = ok(cli('record', '--db', db, '--agent', 'direct-a', *GPT4O_CALL, '--json', cwd=cwd, **nowhere))
    assert json.loads(first.stdout)['cost_micros'] == GPT4O_COST_MICROS
    second = ok(cli('record', '--db', db, '--agent', 'direct-b', '--model', 'gpt-4o', '--provider', 'openai',
                    '--input', '4000', '--output', '1000', cwd=cwd, **nowhere))  # 4000*2.5 + 1000*10 = $0.02
    assert second.stdout.startswith('stored: ')
    assert '= $0.020000 (priced)' in second.stdout

    summary = json.loads(ok(cli('status', '--json', '--db', db, cwd=cwd, **nowhere)).stdout)
    assert summary['spent_micros'] == GPT4O_COST_MICROS + 20_000
    assert summary['requests'] == 2
    assert summary['limit_micros'] == 5_000_000
    status = ok(cli('status', '--db', db, cwd=cwd, **nowhere)).stdout
    assert parse_gauge(status) == ('0.03', '5.00')

    by_agent = json.loads(ok(cli('get-usage', 'day', '--by', 'agent', '--format', 'json', '--db', db, cwd=cwd,
                                 **nowhere)).stdout)
    assert by_agent['total_usd'] == '0.027250'
    assert {i['agent']: (i['requests'], i['cost_usd']) for i in by_agent['items']} == {
        'direct-a': (1, GPT4O_COST_USD), 'direct-b': (1, '0.020000')}
    assert [i['agent'] for i in by_agent['items']] == ['direct-b', 'direct-a'], 'largest first'


def test_direct_duplicate_event_id(db: str, cwd: Path, nowhere: dict[str, str]) -> None:
    args = ('record', '--db', db, '--event-id', 'same', *GPT4O_CALL)
    assert ok(cli(*args, cwd=cwd, **nowhere)).stdout.startswith('stored: same ')
    assert ok(cli(*args, cwd=cwd, **nowhere)).stdout.startswith('duplicate: same ')
    summary = json.loads(ok(cli('status', '--json', '--db', db, cwd=cwd, **nowhere)).stdout)
    assert (summary['requests'], summary['spent_micros']) == (1, GPT4O_COST_MICROS)


def test_direct_set_limit(db: str, cwd: Path, nowhere: dict[str, str]) -> None:
    result = ok(cli('set-limit', 'day', '12.50', '--db', db, cwd=cwd, **nowhere))
    assert result.stdout.strip() == 'day limit set to $12.50 (warn at 80%, throttle at 95%, block at 100%)'
    status = ok(cli('status', '--db', db, cwd=cwd, **nowhere)).stdout
    assert '/ $12.50' in status
    summary = json.loads(ok(cli('status', '--json', '--db', db, cwd=cwd, **nowhere)).stdout)
    assert summary['limit_micros'] == 12_500_000


def test_direct_get_usage_csv_and_table(db: str, cwd: Path, nowhere: dict[str, str]) -> None:
    ok(cli('record', '--db', db, *GPT4O_CALL, cwd=cwd, **nowhere))  # no agent: shown as (none)
    rows = list(csv.DictReader(io.StringIO(ok(cli('get-usage', 'day', '--by', 'agent', '--format', 'csv', '--db',
                                                  db, cwd=cwd, **nowhere)).stdout)))
    assert rows == [{'agent': '(none)', 'requests': '1', 'input_tokens': '1000', 'output_tokens': '500',
                     'cost_usd': GPT4O_COST_USD}]
    table = ok(cli('get-usage', 'day', '--by', 'provider', '--db', db, cwd=cwd, **nowhere)).stdout.splitlines()
    assert table[1].split() == ['openai', '1', '1,000', '500', GPT4O_COST_USD]
    assert table[-1] == f'total this day: ${GPT4O_COST_USD}'


def test_direct_cache_above_input_is_rejected(db: str, cwd: Path, nowhere: dict[str, str]) -> None:
    result = cli('record', '--db', db, '--model', 'gpt-4o', '--input', '10', '--cache-read', '50', cwd=cwd,
                 **nowhere)
    line = assert_one_line_error(result, 1)
    assert 'cache_read_tokens' in line


def test_direct_status_after_a_huge_limit(db: str, cwd: Path, nowhere: dict[str, str]) -> None:
    """Whether or not set-limit accepts $1e30, the database stays readable (it used to crash every `status`)."""
    result = cli('set-limit', 'day', '1e30', '--db', db, cwd=cwd, **nowhere)
    assert 'Traceback' not in result.stderr, str(result)
    assert result.returncode == 2 and 'must be between 0 and 1,000,000,000 dollars' in result.stderr, str(result)
    status = ok(cli('status', '--json', '--db', db, cwd=cwd, **nowhere))
    assert json.loads(status.stdout)['spent_micros'] == 0


@pytest.mark.parametrize('usd', ['2000000000', '1e30'])
def test_direct_set_limit_has_the_same_cap_as_the_api(db: str, cwd: Path, nowhere: dict[str, str], usd: str) -> None:
    result = cli('set-limit', 'day', usd, '--db', db, cwd=cwd, **nowhere)
    assert result.returncode != 0, str(result)
    assert 'Traceback' not in result.stderr, str(result)


def test_direct_zero_limit_is_shown_as_a_limit(db: str, cwd: Path, nowhere: dict[str, str]) -> None:
    assert ok(cli('set-limit', 'day', '0', '--db', db, cwd=cwd, **nowhere)).stdout.strip() == \
        'day limit set to $0.00 (warn at 80%, throttle at 95%, block at 100%)'
    ok(cli('record', '--db', db, '--model', 'gpt-4o', '--cost', '0.50', cwd=cwd, **nowhere))
    status = ok(cli('status', '--db', db, cwd=cwd, **nowhere)).stdout
    assert 'no limit set' not in status, status
    assert '$0.5000 / $0.0000' in status, status


def test_direct_unusable_sqlite_path_is_one_line(tmp_path: Path, cwd: Path) -> None:
    (tmp_path / 'regular-file').write_text('')
    result = cli('status', '--db', f'sqlite:///{tmp_path / "regular-file" / "x.db"}', cwd=cwd)
    assert_one_line_error(result, result.returncode or 1)


def test_direct_unreachable_postgres_is_one_line(cwd: Path) -> None:
    result = cli('status', '--db', f'postgresql://spendgauge@127.0.0.1:{free_port()}/spendgauge', cwd=cwd)
    assert_one_line_error(result, result.returncode or 1)


# --- auth -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp('auth'), token='tok')
    yield srv
    srv.stop()


def requests_today(srv: Server, cwd: Path) -> int:
    token = {'SPENDGAUGE_API_TOKEN': srv.token} if srv.token else {}
    return json.loads(ok(cli('status', '--json', '--url', srv.url, cwd=cwd, **token)).stdout)['requests']


def test_record_without_token_is_refused_with_401(token_server: Server, cwd: Path) -> None:
    before = requests_today(token_server, cwd)
    result = cli('record', '--url', token_server.url, *GPT4O_CALL, cwd=cwd)
    line = assert_one_line_error(result, 1)
    assert '401' in line
    assert 'Bearer' in line

    limit = cli('set-limit', 'day', '3', '--url', token_server.url, cwd=cwd)
    assert '401' in assert_one_line_error(limit, 1)

    wrong = cli('record', '--url', token_server.url, *GPT4O_CALL, cwd=cwd, SPENDGAUGE_API_TOKEN='nope')
    assert '401' in assert_one_line_error(wrong, 1)

    assert requests_today(token_server, cwd) == before, 'refused writes must not be stored'


@pytest.mark.parametrize('variable', ['SPENDGAUGE_API_TOKEN', 'SPENDGAUGE_API_TOKENS'])
def test_record_with_token_succeeds(token_server: Server, cwd: Path, variable: str) -> None:
    env = {variable: 'tok' if variable == 'SPENDGAUGE_API_TOKEN' else 'tok,other'}
    before = requests_today(token_server, cwd)
    result = ok(cli('record', '--url', token_server.url, *GPT4O_CALL, cwd=cwd, **env))
    assert result.stdout.startswith('stored: ')
    assert '$0.007250' in result.stdout
    assert requests_today(token_server, cwd) == before + 1
    limit = {'SPENDGAUGE_API_TOKEN': '7', 'SPENDGAUGE_API_TOKENS': '8'}[variable]
    ok(cli('set-limit', 'day', limit, '--url', token_server.url, cwd=cwd, **env))
    assert f'/ ${limit}.00' in ok(cli('status', '--url', token_server.url, cwd=cwd, **env)).stdout


# --- errors -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('command', [('record', '--model', 'gpt-4o', '--input', '10'), ('status',),
                                     ('get-usage', 'day'), ('set-limit', 'day', '1')])
def test_server_not_running(cwd: Path, command: tuple[str, ...]) -> None:
    url = f'http://127.0.0.1:{free_port()}'
    line = assert_one_line_error(cli(*command, '--url', url, cwd=cwd), 1)
    assert 'cannot reach' in line
    assert url in line


def test_server_not_running_from_spendgauge_url(cwd: Path) -> None:
    url = f'http://127.0.0.1:{free_port()}'
    line = assert_one_line_error(cli('status', cwd=cwd, SPENDGAUGE_URL=url), 1)
    assert f'cannot reach SpendGauge at {url}' in line


def test_record_without_tokens_or_cost_is_refused(server: Server, cwd: Path) -> None:
    agent = agent_id()
    line = assert_one_line_error(cli('record', '--url', server.url, '--agent', agent, '--model', 'gpt-4o', cwd=cwd), 2)
    assert line == ('spendgauge: nothing to record: give the tokens of the call (--input, --output, --cache-read, '
                    '--cache-write) or its cost (--cost USD)')
    assert_one_line_error(cli('record', '--url', server.url, '--agent', agent, '--model', 'gpt-4o', '--input', '0',
                              cwd=cwd), 2)
    cost_only = json.loads(ok(cli('record', '--url', server.url, '--agent', agent, '--model', 'gpt-4o', '--cost',
                                  '0.25', '--json', cwd=cwd)).stdout)
    assert (cost_only['cost_micros'], cost_only['cost_source'], cost_only['input_tokens']) == (250_000, 'reported', 0)
    usage = json.loads(ok(cli('get-usage', 'day', '--by', 'agent', '--format', 'json', '--url', server.url,
                              cwd=cwd)).stdout)
    assert [item['requests'] for item in usage['items'] if item['agent'] == agent] == [1], 'only the call with a cost'


def test_sync_of_a_source_without_keys_says_which_to_set(server: Server, db: str, cwd: Path) -> None:
    line = assert_one_line_error(cli('sync', 'litellm', '--url', server.url, cwd=cwd), 1)
    assert line.startswith('spendgauge: server answered 409: litellm is not configured: set SPENDGAUGE_LITELLM_URL '
                           'and SPENDGAUGE_LITELLM_MASTER_KEY in .env or the environment'), line
    direct = assert_one_line_error(cli('sync', 'openai_direct', '--db', db, cwd=cwd), 1)
    assert 'openai_direct is not configured: set SPENDGAUGE_OPENAI_ADMIN_KEY in .env' in direct
    every = ok(cli('sync', '--url', server.url, cwd=cwd)).stdout
    assert every.startswith('no source is configured: set SPENDGAUGE_LITELLM_URL and SPENDGAUGE_LITELLM_MASTER_KEY '
                            '(litellm); or SPENDGAUGE_OPENAI_ADMIN_KEY (openai_direct); or'), every


def test_negative_tokens_are_a_usage_error(cwd: Path) -> None:
    result = cli('record', '--url', f'http://127.0.0.1:{free_port()}', '--model', 'gpt-4o', '--input', '-5', cwd=cwd)
    assert 'negative' in assert_usage_error(result, '--input')


def test_tokens_must_be_whole_numbers(cwd: Path) -> None:
    result = cli('record', '--model', 'gpt-4o', '--output', '1.5', cwd=cwd)
    assert_usage_error(result, '--output', 'whole number')


def test_cache_read_above_input_is_rejected_by_the_server(server: Server, cwd: Path) -> None:
    agent = agent_id()
    result = cli('record', '--url', server.url, '--agent', agent, '--model', 'gpt-4o', '--cache-read', '50',
                 '--input', '10', cwd=cwd)
    line = assert_one_line_error(result, 1)
    assert 'cache_read_tokens' in line
    assert '422' in line
    usage = json.loads(ok(cli('get-usage', 'day', '--by', 'agent', '--format', 'json', '--url', server.url,
                              cwd=cwd)).stdout)
    assert agent not in {item['agent'] for item in usage['items']}, 'a rejected call must not be stored'


@pytest.mark.parametrize('args, fragment', [
    (('get-usage', 'year'), 'period'),
    (('get-usage', 'day', '--by', 'user'), '--by'),
    (('get-usage', 'day', '--format', 'xml'), '--format'),
    (('status', '--period', 'year'), '--period'),
    (('set-limit', 'day', 'abc'), 'usd'),
    (('set-limit', 'day', '-1'), 'usd'),
    (('set-limit', 'day', 'NaN'), 'usd'),
    (('set-limit', 'year', '5'), 'period'),
    (('record', '--input', '5'), '--model'),
    (('record', '--model', 'm', '--channel', 'carrier-pigeon'), '--channel'),
    ((), 'command'),
])
def test_bad_arguments_exit_2(cwd: Path, args: tuple[str, ...], fragment: str) -> None:
    # the console script: `python -m app` without arguments means `serve`
    assert_usage_error(run([SPENDGAUGE, *args], cwd), fragment)


@pytest.mark.parametrize('url, fragment', [('notaurl://x', 'unsupported database'), ('notaurl', 'not a database URL')])
def test_bad_database_url_is_one_line(cwd: Path, url: str, fragment: str) -> None:
    line = assert_one_line_error(cli('status', '--db', url, cwd=cwd), 2)
    assert fragment in line


def test_bad_setting_is_one_line(cwd: Path, tmp_path: Path) -> None:
    result = cli('status', '--db', f'sqlite:///{tmp_path / "x.db"}', cwd=cwd, SPENDGAUGE_TZ='Mars/Olympus_Mons')
    assert 'SPENDGAUGE_TZ' in assert_one_line_error(result, 2)


# --- a --url that is not SpendGauge ----------------------------------------------------------------------------

class _Impostor(BaseHTTPRequestHandler):
    status = 404
    content_type = 'text/html'
    body = b'<!DOCTYPE html>\n<html>\n<body>\n<h1>Not Found</h1>\n</body>\n</html>\n'

    def _answer(self) -> None:
        self.send_response(self.status)
        self.send_header('Content-Type', self.content_type)
        self.send_header('Content-Length', str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def impostor(request: pytest.FixtureRequest) -> Iterator[str]:
    """Another web server at --url, answering every request with (status, content type, body)."""
    status, content_type, body = request.param
    handler = type('Handler', (_Impostor,), {'status': status, 'content_type': content_type, 'body': body})
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.mark.parametrize('impostor', [(404, 'application/json', b'{"detail": "Not Found"}')], indirect=True)
def test_not_found_json_from_another_server_is_one_line(impostor: str, cwd: Path) -> None:
    line = assert_one_line_error(cli('status', '--url', impostor, cwd=cwd), 1)
    assert line == 'spendgauge: server answered 404: Not Found'


@pytest.mark.parametrize('impostor', [(404, 'text/html', _Impostor.body)], indirect=True)
def test_html_error_page_is_one_line(impostor: str, cwd: Path) -> None:
    line = assert_one_line_error(cli('status', '--url', impostor, cwd=cwd), 1)
    assert '404' in line


@pytest.mark.parametrize('impostor', [(200, 'text/html', b'<html><body>hello</body></html>')], indirect=True)
def test_non_json_answer_is_a_failed_request(impostor: str, cwd: Path) -> None:
    assert_one_line_error(cli('status', '--url', impostor, cwd=cwd), 1)


@pytest.mark.parametrize('impostor', [(200, 'application/json', b'{}')], indirect=True)
@pytest.mark.parametrize('command', [('status',), ('record', '--model', 'gpt-4o', '--output', '1')])
def test_unexpected_json_answer_is_one_line(impostor: str, cwd: Path, command: tuple[str, ...]) -> None:
    assert_one_line_error(cli(*command, '--url', impostor, cwd=cwd), 1)


@pytest.mark.parametrize('impostor', [(400, 'application/json', b'["bad request"]')], indirect=True)
def test_error_body_that_is_a_json_list_is_one_line(impostor: str, cwd: Path) -> None:
    assert '400' in assert_one_line_error(cli('status', '--url', impostor, cwd=cwd), 1)


# --- help and serve ---------------------------------------------------------------------------------------------

def test_spendgauge_serve_help(cwd: Path) -> None:
    result = ok(run([SPENDGAUGE, 'serve', '--help'], cwd))
    assert result.stdout.startswith('usage: spendgauge serve')
    for option in ('--host', '--port', '--db', '--native'):
        assert option in result.stdout


def test_python_m_app_help(cwd: Path) -> None:
    result = ok(run([sys.executable, '-m', 'app', '--help'], cwd))
    assert result.stdout.startswith('usage: spendgauge')
    assert '--port' in result.stdout


def test_spendgauge_help_lists_the_commands(cwd: Path) -> None:
    result = ok(run([SPENDGAUGE, '--help'], cwd))
    for command in ('serve', 'record', 'status', 'get-usage', 'set-limit'):
        assert command in result.stdout


@pytest.mark.parametrize('argv', [['serve'], []], ids=['serve', 'implicit-serve'])
def test_serve_on_a_public_address_without_tokens_is_refused(tmp_path: Path, cwd: Path, argv: list[str]) -> None:
    port = free_port()
    started = time.monotonic()
    result = run([sys.executable, '-m', 'app', *argv, '--host', '0.0.0.0', '--port', str(port), '--db',
                  f'sqlite:///{tmp_path / "serve.db"}'], cwd, timeout=30)
    assert time.monotonic() - started < 20, 'must refuse before starting anything'
    line = assert_one_line_error(result, 2)
    assert 'SPENDGAUGE_API_TOKENS' in line
    assert '0.0.0.0' in line
    assert not (tmp_path / 'serve.db').exists(), 'refused before touching the database'
