"""`spendgauge check` and `spendgauge export-spend` as pipelines use them: real subprocesses, a real server, and the
swarm-budget.sh convention (SWARM_CURRENT_SPEND, .swarm/costs/current_spend, SWARM_BUDGET_MAX) when no configured
server answers.

Exit codes: 0 within budget, 1 over it (at the limit counts as over), 2 on error; one line of output, and without
--url one line on stderr naming the server asked, or saying that none answered and what was read instead."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import Result, cli
from tests.support.servers import Server, free_port, start_server


@pytest.fixture(autouse=True)
def _no_swarm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ('SWARM_CURRENT_SPEND', 'SWARM_BUDGET_MAX'):
        monkeypatch.delenv(name, raising=False)


# The configured server of the tests that need none to answer (not 8080: one may run on this machine).
NO_SERVER_PORT = str(free_port())


def check(cwd: Path, *args: str, **env: str) -> Result:
    return cli('check', *args, cwd=cwd, **{'SPENDGAUGE_PORT': NO_SERVER_PORT, **env})


def one_line(result: Result, code: int) -> str:
    assert result.returncode == code, str(result)
    assert 'Traceback' not in result.stderr, str(result)
    lines = (result.stdout if code in (0, 1) else result.stderr).strip().splitlines()
    assert len(lines) == 1, str(result)
    return lines[0]


def spend_file(cwd: Path, text: str) -> Path:
    path = cwd / '.swarm' / 'costs' / 'current_spend'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_env_convention(tmp_path: Path) -> None:
    line = one_line(check(tmp_path, SWARM_CURRENT_SPEND='1.50', SWARM_BUDGET_MAX='2'), 0)
    assert line == 'within budget: $1.50 of $2.00 (75.0%) this day, global [SWARM_CURRENT_SPEND]'
    line = one_line(check(tmp_path, SWARM_CURRENT_SPEND='2.50', SWARM_BUDGET_MAX='2'), 1)
    assert line.startswith('OVER BUDGET: $2.50 of $2.00 (125.0%)')
    one_line(check(tmp_path, SWARM_CURRENT_SPEND='2', SWARM_BUDGET_MAX='2.00'), 1)  # at the limit
    one_line(check(tmp_path, '--max', '3', SWARM_CURRENT_SPEND='2.50', SWARM_BUDGET_MAX='2'), 0)  # --max wins


def test_file_convention(tmp_path: Path) -> None:
    spend_file(tmp_path, '3.10\n')
    result = check(tmp_path, '--max', '5')
    line = one_line(result, 0)
    assert line == 'within budget: $3.10 of $5.00 (62.0%) this day, global [.swarm/costs/current_spend]'
    assert result.stderr == f'spendgauge: no server at http://127.0.0.1:{NO_SERVER_PORT}; using ' \
                            '.swarm/costs/current_spend\n'
    one_line(check(tmp_path, SWARM_BUDGET_MAX='3'), 1)
    one_line(check(tmp_path, '--max', '5', SWARM_CURRENT_SPEND='6'), 1)  # the variable wins over the file


def test_on_exceeded_runs_the_command_only_when_over(tmp_path: Path) -> None:
    command = 'echo "$SPENDGAUGE_SPENT_USD/$SPENDGAUGE_MAX_USD $SPENDGAUGE_SCOPE" > alerted.txt'
    result = check(tmp_path, '--on-exceeded', command, SWARM_CURRENT_SPEND='1.00', SWARM_BUDGET_MAX='2')
    one_line(result, 0)
    assert not (tmp_path / 'alerted.txt').exists()
    result = check(tmp_path, '--on-exceeded', command, SWARM_CURRENT_SPEND='4.25', SWARM_BUDGET_MAX='2')
    assert result.returncode == 1, str(result)
    assert (tmp_path / 'alerted.txt').read_text() == '4.25/2 global\n'


@pytest.mark.parametrize(('args', 'env', 'message'), [
    ((), {}, 'no spend to check'),
    ((), {'SWARM_CURRENT_SPEND': '1'}, 'no budget to check against'),
    (('--max', '1'), {'SWARM_CURRENT_SPEND': 'lots'}, 'SWARM_CURRENT_SPEND is not a dollar amount'),
    ((), {'SWARM_CURRENT_SPEND': '1', 'SWARM_BUDGET_MAX': '-3'}, 'SWARM_BUDGET_MAX must be a non-negative'),
    (('--scope', 'team:x', '--max', '1'), {'SWARM_CURRENT_SPEND': '1'}, '--scope must be global or one of'),
    (('--scope', 'agent:x', '--max', '1'), {'SWARM_CURRENT_SPEND': '1'}, 'the swarm convention has no agent spend'),
    (('--url', 'http://127.0.0.1:9', '--max', '1'), {}, 'cannot reach SpendGauge'),
])
def test_errors_exit_2_with_one_line(tmp_path: Path, args: tuple[str, ...], env: dict[str, str],
                                     message: str) -> None:
    line = one_line(check(tmp_path, *args, **env), 2)
    assert line.startswith('spendgauge: ') and message in line


def test_a_bad_file_and_bad_max_exit_2(tmp_path: Path) -> None:
    spend_file(tmp_path, 'n/a')
    assert 'is not a dollar amount' in one_line(check(tmp_path, '--max', '1'), 2)
    result = check(tmp_path, '--max', 'much', SWARM_CURRENT_SPEND='1')
    assert result.returncode == 2 and 'Traceback' not in result.stderr


@pytest.fixture(scope='module')
def spending_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp('pipeline'))
    with server.client() as client:
        for agent, usd in (('pipe-a', '1.25'), ('pipe-b', '0.50')):
            response = client.post('/usage', json={'model': 'gpt-4o', 'provider': 'openai', 'agent_id': agent,
                                                   'cost_usd': usd})
            assert response.status_code in (200, 201), response.text
    yield server
    server.stop()


def test_against_a_server(tmp_path: Path, spending_server: Server) -> None:
    url = spending_server.url
    line = one_line(check(tmp_path, '--url', url), 0)  # no --max: the server's daily limit ($5)
    assert line == 'within budget: $1.75 of $5.00 (35.0%) this day, global [server]'
    one_line(check(tmp_path, '--url', url, '--max', '1.75'), 1)
    one_line(check(tmp_path, '--max', '1', SPENDGAUGE_URL=url), 1)
    line = one_line(check(tmp_path, '--url', url, '--scope', 'agent:pipe-a', '--max', '1'), 1)
    assert line == 'OVER BUDGET: $1.25 of $1.00 (125.0%) this day, agent pipe-a [server]'
    one_line(check(tmp_path, '--url', url, '--scope', 'agent:pipe-b', '--max', '1'), 0)
    one_line(check(tmp_path, '--url', url, '--scope', 'agent:nobody', '--max', '0.01'), 0)
    one_line(check(tmp_path, '--url', url, '--scope', 'provider:openai', '--max', '1', '--period', 'month'), 1)
    assert 'pass --max' in one_line(check(tmp_path, '--url', url, '--scope', 'agent:pipe-a'), 2)


def test_the_configured_server_is_asked_before_the_swarm_file(tmp_path: Path, spending_server: Server) -> None:
    """No --url: the server of SPENDGAUGE_PORT answers, so a stale .swarm/costs/current_spend is not read."""
    spend_file(tmp_path, '99\n')
    port = spending_server.url.rsplit(':', 1)[1]
    result = check(tmp_path, SPENDGAUGE_PORT=port)
    assert one_line(result, 0) == 'within budget: $1.75 of $5.00 (35.0%) this day, global [server]'
    assert result.stderr == f'spendgauge: asked http://127.0.0.1:{port}\n'
    line = one_line(check(tmp_path, SPENDGAUGE_PORT=port, SWARM_BUDGET_MAX='1.5'), 1)
    assert line.startswith('OVER BUDGET: $1.75 of $1.50 '), "SWARM_BUDGET_MAX wins over the server's limit"
    assert one_line(check(tmp_path, '--scope', 'agent:pipe-b', '--max', '1', SPENDGAUGE_PORT=port), 0) == \
        'within budget: $0.50 of $1.00 (50.0%) this day, agent pipe-b [server]'
    assert 'no day limit for agent:pipe-b: pass --max' in one_line(
        check(tmp_path, '--scope', 'agent:pipe-b', SPENDGAUGE_PORT=port), 2)


def test_export_spend_feeds_the_local_check(tmp_path: Path, spending_server: Server) -> None:
    result = cli('export-spend', '--url', spending_server.url, cwd=tmp_path)
    assert result.returncode == 0, str(result)
    assert result.stdout == '1.750000 USD spent this day written to .swarm/costs/current_spend\n'
    assert (tmp_path / '.swarm' / 'costs' / 'current_spend').read_text() == '1.750000\n'
    one_line(check(tmp_path, '--max', '2'), 0)
    one_line(check(tmp_path, SWARM_BUDGET_MAX='1.5'), 1)
    other = tmp_path / 'elsewhere' / 'spend.txt'
    assert cli('export-spend', '--url', spending_server.url, '--file', str(other), cwd=tmp_path).returncode == 0
    assert other.read_text() == '1.750000\n'
