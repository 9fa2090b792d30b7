"""The operators' commands (eco, agent, alerts, thresholds) as real subprocesses, through a real server (`--url`)
and on a database file (`--db`): the same commands as the dashboard and the API, so the same results."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.alerting import alerts
from services.core.db import create_db_engine, upgrade
from tests.conftest import fresh_postgres_engine, postgres_url
from tests.support.cli import assert_one_line_error, cli, ok
from tests.support.servers import Server, start_server
from tests.support.wait import eventually


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / 'server').mkdir()
    server = start_server(tmp_path / 'server')
    yield server
    server.stop()


@pytest.fixture(params=['url', 'db'])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, ...]]:
    """The CLI's options for a server, or for a database file of its own."""
    if request.param == 'url':
        (tmp_path / 'server').mkdir()
        server = start_server(tmp_path / 'server')
        yield '--url', server.url
        server.stop()
    else:
        yield '--db', f'sqlite:///{tmp_path / "cli.db"}'


def run(where: tuple[str, ...], tmp_path: Path, *args: str) -> str:
    return ok(cli(*args, *where, cwd=tmp_path)).stdout.strip()


def test_eco_mode_switches_and_shows(where: tuple[str, ...], tmp_path: Path) -> None:
    assert run(where, tmp_path, 'eco') == 'eco mode off (never switched)'
    assert run(where, tmp_path, 'eco', 'on', '--reason', 'night batch').startswith('eco mode on since ')
    shown = run(where, tmp_path, 'eco')
    assert shown.startswith('eco mode on since ') and shown.endswith('UTC (night batch)')
    assert run(where, tmp_path, 'eco', 'off').startswith('eco mode off since ')


def test_pausing_an_agent_blocks_its_checks(where: tuple[str, ...], tmp_path: Path) -> None:
    agent = f'agent-{uuid.uuid4().hex[:8]}'
    line = assert_one_line_error(cli('agent', 'pause', agent, *where, cwd=tmp_path), 1)
    assert f"no agent '{agent}'" in line
    run(where, tmp_path, 'record', '--model', 'gpt-4o', '--provider', 'openai', '--agent', agent, '--cost', '0.01')
    assert run(where, tmp_path, 'agent', 'pause', agent) == f'{agent} paused: its checks are blocked'
    if where[0] == '--url':
        with httpx.Client(base_url=where[1] + '/api/v1') as api:
            blocked = api.post('/check', json={'agent_id': agent}).json()
            assert blocked['decision'] == 'block' and blocked['reasons'][0] == f'agent {agent} is paused'
    assert run(where, tmp_path, 'agent', 'resume', agent) == f'{agent} resumed'


def test_alerts_are_listed_acknowledged_and_resolved(tmp_path: Path) -> None:
    db = f'sqlite:///{tmp_path / "alerts.db"}'
    engine = create_db_engine(db)
    upgrade(engine)
    with engine.begin() as conn:
        alert, _ = alerts.raise_alert(conn, 'anomaly', 'critical', 'looper spent $3.00 in the last hour', 'k:1')
    engine.dispose()
    assert alert is not None
    listing = run(('--db', db), tmp_path, 'alerts', 'list').splitlines()
    assert listing[0].split() == ['id', 'severity', 'type', 'last', 'seen', 'state', 'message']
    assert listing[1].split()[:3] == [str(alert['id']), 'critical', 'anomaly'] and 'open' in listing[1]
    assert run(('--db', db), tmp_path, 'alerts').splitlines() == listing  # `alerts` alone lists
    assert run(('--db', db), tmp_path, '--db', db, 'alerts', '--all').splitlines() == listing
    assert run(('--db', db), tmp_path, 'alerts', 'ack', str(alert['id']), '--by', 'alice') == \
        f'alert {alert["id"]} acknowledged by alice'
    assert 'acknowledged' in run(('--db', db), tmp_path, 'alerts', 'list').splitlines()[1]
    assert run(('--db', db), tmp_path, 'alerts', 'resolve', str(alert['id'])) == f'alert {alert["id"]} resolved'
    assert run(('--db', db), tmp_path, 'alerts', 'list') == '(no alerts)'
    assert 'resolved' in run(('--db', db), tmp_path, 'alerts', 'list', '--all')
    assert f'no alert {alert["id"] + 1}' in assert_one_line_error(
        cli('alerts', 'ack', str(alert['id'] + 1), '--db', db, cwd=tmp_path), 1)


def test_alerts_through_a_server(own_server: Server, tmp_path: Path) -> None:
    where = ('--url', own_server.url)
    assert run(where, tmp_path, 'alerts', 'list') == '(no alerts)'
    assert run(where, tmp_path, 'alerts') == '(no alerts)'
    line = assert_one_line_error(cli('alerts', 'resolve', '99', *where, cwd=tmp_path), 1)
    assert '404' in line and 'no alert 99' in line


def test_thresholds_set_show_and_clear(where: tuple[str, ...], tmp_path: Path) -> None:
    assert run(where, tmp_path, 'thresholds') == 'no agent thresholds'
    assert run(where, tmp_path, 'thresholds', '--session', '2', '--pause') == \
        '$2.00 per agent and session; an agent that crosses one is paused'
    assert run(where, tmp_path, 'thresholds', '--day', '$5') == \
        '$2.00 per agent and session; $5.00 per agent and day; an agent that crosses one is paused'
    assert run(where, tmp_path, 'thresholds', '--no-pause') == '$2.00 per agent and session; $5.00 per agent and day'
    policies = run(where, tmp_path, 'limits', 'list')
    assert 'Agent session threshold' in policies and 'Agent daily threshold' in policies
    line = assert_one_line_error(cli('thresholds', '--day', '0', *where, cwd=tmp_path), 2 if where[0] == '--db' else 1)
    assert 'day_threshold_usd' in line
    assert run(where, tmp_path, 'thresholds', '--clear') == 'no agent thresholds'


@pytest.mark.parametrize('database', ['sqlite', 'postgresql'])
def test_a_change_through_the_database_reaches_the_server_on_it(tmp_path: Path, database: str) -> None:
    """`--db` runs the same command as the server: the server hears of it at once (NOTIFY on PostgreSQL, the notices
    table on SQLite; not on its 30 s clock), so its next check blocks the agent paused from the command line."""
    if database == 'postgresql':
        url = postgres_url()
        fresh_postgres_engine(url).dispose()
    else:
        url = f'sqlite:///{tmp_path / "shared.db"}'
    (tmp_path / 'server').mkdir()
    server = start_server(tmp_path / 'server', database_url=url)
    try:
        with server.client() as api:
            record = {'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.01', 'agent_id': 'nightly'}
            assert api.post('/usage', json=record).status_code == 201
            assert api.post('/check', json={'agent_id': 'nightly'}).json()['decision'] == 'allow'
            run(('--db', url), tmp_path, 'agent', 'pause', 'nightly')
            eventually(lambda: api.post('/check', json={'agent_id': 'nightly'}).json()['decision'] == 'block',
                       timeout=5)
            run(('--db', url), tmp_path, 'eco', 'on')
            eventually(lambda: api.post('/check', json={}).json()['eco_mode'] is True, timeout=5)
    finally:
        server.stop()
