"""`spendgauge get-usage --events`: the calls with the usage explorer's filters, through a server (`--url`) and on
the database itself (`--db`, SQLite and PostgreSQL), as a table, JSON pages, and CSV or JSON lines streamed."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import fresh_postgres_engine, postgres_url
from tests.support.cli import assert_one_line_error, assert_usage_error, cli, ok
from tests.support.servers import free_port, start_server

NOW = datetime.now(UTC).replace(microsecond=0)
# 60 priced gpt-4o calls by `alpha` (every third tagged `nightly`), 30 reported calls by `beta`, 10 unpriced ones by
# `gamma`, a second apart going back from now; and one `alpha` call of last year. The periods are UTC's (the default).
OLD = datetime(NOW.year - 1, 1, 15, 12, tzinfo=UTC)


def _events() -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for i in range(100):
        ts = NOW - timedelta(seconds=i + 1)
        if i < 60:
            event = {'agent_id': 'alpha', 'provider': 'openai', 'model': 'gpt-4o', 'input_tokens': 1000 + i,
                     'output_tokens': 100, 'tags': ['nightly'] if i % 3 == 0 else []}
        elif i < 90:
            event = {'agent_id': 'beta', 'provider': 'anthropic', 'model': 'claude-3-5-haiku-latest',
                     'cost_usd': '0.002', 'channel': 'litellm', 'session_id': 'beta-session'}
        else:
            event = {'agent_id': 'gamma', 'provider': 'acme', 'model': 'no-such-model', 'input_tokens': 5}
        events.append({**event, 'event_id': f'call-{i}', 'ts': ts.isoformat()})
    events.append({'agent_id': 'alpha', 'provider': 'openai', 'model': 'gpt-4o', 'input_tokens': 10,
                   'output_tokens': 10, 'event_id': 'call-old', 'ts': OLD.isoformat()})
    return events


EVENTS = _events()
TODAY = [e for e in EVENTS if str(e['ts']) >= NOW.replace(hour=0, minute=0, second=0).isoformat()]
THIS_MONTH = [e for e in EVENTS if str(e['ts']) >= NOW.replace(day=1, hour=0, minute=0, second=0).isoformat()]


@pytest.fixture(scope='module', params=['url', 'db-sqlite', 'db-postgresql'])
def where(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The CLI's options: a server's URL, or the database itself, the 101 calls recorded through a server."""
    workdir = tmp_path_factory.mktemp('server')
    url = None
    if request.param == 'db-postgresql':
        url = postgres_url()
        fresh_postgres_engine(url).dispose()
    server = start_server(workdir, database_url=url, SPENDGAUGE_DAILY_LIMIT_USD='none')
    try:
        with server.client() as api:
            answer = api.post('/usage/batch', json={'events': EVENTS})
            assert answer.status_code == 200, answer.text
            assert [r['status'] for r in answer.json()['results']] == ['stored'] * len(EVENTS)
        if request.param == 'url':
            yield '--url', server.url
            return
    finally:
        server.stop()
    yield '--db', server.database_url


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    return tmp_path


def calls(where: tuple[str, str], cwd: Path, *args: str) -> dict:
    return json.loads(ok(cli('get-usage', '--format', 'json', *args, *where, cwd=cwd)).stdout)


def test_the_newest_calls_in_pages_that_go_on_by_cursor(where: tuple[str, str], cwd: Path) -> None:
    first = calls(where, cwd, '--events', '--limit', '40')
    assert [item['event_id'] for item in first['items']] == [f'call-{i}' for i in range(40)]
    second = calls(where, cwd, '--events', '--limit', '40', '--cursor', first['next_cursor'])
    third = calls(where, cwd, '--events', '--limit', '40', '--cursor', second['next_cursor'])
    seen = [item['event_id'] for page in (first, second, third) for item in page['items']]
    assert seen == [e['event_id'] for e in EVENTS]
    assert third['next_cursor'] is None


def test_each_filter_selects_its_calls(where: tuple[str, str], cwd: Path) -> None:
    def ids(*args: str) -> list[str]:
        return [item['event_id'] for item in calls(where, cwd, *args, '--limit', '1000')['items']]

    def expected(keep: object) -> list[str]:
        return [str(e['event_id']) for e in EVENTS if keep(e)]  # type: ignore[operator]

    assert ids('--agent', 'beta') == expected(lambda e: e['agent_id'] == 'beta')
    assert ids('--session', 'beta-session') == expected(lambda e: e.get('session_id') == 'beta-session')
    assert ids('--tag', 'nightly') == expected(lambda e: 'nightly' in e.get('tags', []))
    assert ids('--cost-source', 'unpriced') == expected(lambda e: e['agent_id'] == 'gamma')
    assert ids('--cost-source', 'reported', '--channel', 'litellm') == expected(lambda e: e['agent_id'] == 'beta')
    assert ids('--provider', 'openai', '--model', 'gpt-4o') == expected(lambda e: e['agent_id'] == 'alpha')
    assert ids('--agent', 'alpha', '--from', OLD.isoformat(), '--to', (OLD + timedelta(hours=1)).isoformat()) \
        == ['call-old']
    assert ids('month', '--agent', 'alpha') == expected(lambda e: e['agent_id'] == 'alpha' and e in THIS_MONTH)
    assert ids('day', '--events') == [str(e['event_id']) for e in TODAY]
    assert ids('--user', 'nobody') == []


def test_sorted_by_cost_the_dearest_come_first(where: tuple[str, str], cwd: Path) -> None:
    dearest = calls(where, cwd, '--agent', 'alpha', '--sort', 'cost', '--limit', '3')
    assert [item['event_id'] for item in dearest['items']] == ['call-59', 'call-58', 'call-57']  # most input tokens
    rows = list(csv.DictReader(io.StringIO(ok(cli('get-usage', '--sort', 'cost', '--format', 'csv', *where,
                                                  cwd=cwd)).stdout)))
    costs = [row['cost_usd'] for row in rows]
    assert costs == sorted(costs, key=float, reverse=True) and len(rows) == len(EVENTS)


def test_a_table_says_where_the_next_page_starts(where: tuple[str, str], cwd: Path) -> None:
    out = ok(cli('get-usage', '--agent', 'beta', '--limit', '2', *where, cwd=cwd)).stdout.splitlines()
    assert out[0].split() == ['time', 'agent', 'model', 'input', 'output', 'cost', 'source']
    assert len(out) == 4
    assert out[1].split()[2:] == ['beta', 'anthropic/claude-3-5-haiku-latest', '0', '0', '$0.002000', 'reported']
    assert out[3].startswith('more: --cursor ')
    cursor = out[3].removeprefix('more: --cursor ')
    page = calls(where, cwd, '--agent', 'beta', '--limit', '2', '--cursor', cursor)
    assert [item['event_id'] for item in page['items']] == ['call-62', 'call-63']


def test_csv_and_json_lines_stream_every_call(where: tuple[str, str], cwd: Path) -> None:
    text = ok(cli('get-usage', '--events', '--format', 'csv', *where, cwd=cwd)).stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row['event_id'] for row in rows] == [e['event_id'] for e in EVENTS]
    assert rows[0]['cost_usd'] == '0.003500' and rows[0]['cost_source'] == 'priced'  # 1000 x $2.50 + 100 x $10 /M
    assert {row['tags'] for row in rows if row['event_id'] == 'call-0'} == {'nightly'}

    out = cwd / 'beta.jsonl'
    said = ok(cli('get-usage', '--agent', 'beta', '--format', 'jsonl', '--limit', '25', '-o', str(out), *where,
                  cwd=cwd)).stdout
    assert said.strip() == f'calls (jsonl) written to {out}'
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line['event_id'] for line in lines] == [f'call-{i}' for i in range(60, 85)]
    assert {line['cost_micros'] for line in lines} == {2000}


def test_bad_requests_are_one_line_errors(where: tuple[str, str], cwd: Path) -> None:
    for args, fragment in [
        (('day', '--from', NOW.isoformat()), 'PERIOD or --from/--to, not both'),
        (('--agent', 'alpha', '--by', 'agent'), '--by makes a breakdown'),
        (('--events', '--limit', '0'), '--limit: must be between 1 and 1,000'),
        (('--events', '--format', 'csv', '--limit', '1000001'), 'between 1 and 1,000,000'),
        (('--events', '--format', 'csv', '--cursor', 'x'), '--cursor pages a table or JSON'),
    ]:
        line = assert_one_line_error(cli('get-usage', *args, *where, cwd=cwd), 2)
        assert fragment in line, line
    line = assert_one_line_error(cli('get-usage', '--events', '--from', 'yesterday', *where, cwd=cwd), 2)
    assert 'from' in line
    line = assert_one_line_error(cli('get-usage', '--events', '--cursor', 'not-a-cursor', *where, cwd=cwd), 2)
    assert 'cursor: not a cursor returned by this API' in line
    assert not list(cwd.glob('*.csv'))
    assert_usage_error(cli('get-usage', '--events', '--channel', 'pigeon', *where, cwd=cwd))
    line = assert_one_line_error(cli('get-usage', 'day', '--format', 'jsonl', *where, cwd=cwd), 2)
    assert 'add --events' in line


def test_an_export_refused_by_the_server_makes_no_file(cwd: Path) -> None:
    out = cwd / 'x.csv'
    line = assert_one_line_error(cli('get-usage', '--events', '--format', 'csv', '-o', str(out), '--url',
                                     f'http://127.0.0.1:{free_port()}', cwd=cwd), 1)
    assert 'cannot reach SpendGauge' in line
    assert not out.exists()
