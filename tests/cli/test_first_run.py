"""First run to daily use, as a user does it: `spendgauge serve` in a folder with a `.env`, then `spendgauge status`
from that folder finds it; a second `serve` on the same port says so at once; the one line that says where it serves.

Real server processes and real `spendgauge` subprocesses; the `.env` is the only configuration."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.cli.test_cli import parse_gauge
from tests.support.cli import SPENDGAUGE, assert_one_line_error, assert_usage_error, cli, ok, run
from tests.support.servers import clean_env, free_port, start_server

SERVING_LINE = re.compile(r'^SpendGauge serving on (http://127\.0\.0\.1:(\d+)) \(database (.+)\)$', re.MULTILINE)
TOKEN = 'first-run-token-0123456789'


def with_dotenv(folder: Path, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / '.env').write_text(text)
    return folder


def test_status_and_check_find_the_server_on_the_port_set_in_dotenv(tmp_path: Path) -> None:
    """The issue's done-when: `make run`, then `spendgauge status` works with a non-default port set in `.env`."""
    port = free_port()
    folder = with_dotenv(tmp_path / 'project', f'SPENDGAUGE_PORT={port}\n')
    server = start_server(folder, port=port, dotenv=True)
    try:
        status = ok(run([SPENDGAUGE, 'status'], folder, SPENDGAUGE_ENV_FILE='.env'))
        assert parse_gauge(status.stdout) == ('0.00', '5.00')

        recorded = ok(run([SPENDGAUGE, 'record', '--model', 'gpt-4o', '--cost', '0.75'], folder,
                          SPENDGAUGE_ENV_FILE='.env'))
        assert recorded.stdout.startswith('stored: ')
        assert parse_gauge(ok(cli('status', cwd=folder, SPENDGAUGE_ENV_FILE='.env')).stdout) == ('0.75', '5.00')

        # A stale swarm file is not read while the configured server answers; stderr says which server it asked.
        (folder / '.swarm' / 'costs').mkdir(parents=True)
        (folder / '.swarm' / 'costs' / 'current_spend').write_text('99\n')
        check = run([SPENDGAUGE, 'check'], folder, SPENDGAUGE_ENV_FILE='.env')
        assert check.returncode == 0, str(check)
        assert check.stdout == 'within budget: $0.75 of $5.00 (15.0%) this day, global [server]\n'
        assert check.stderr == f'spendgauge: asked http://127.0.0.1:{port}\n'
    finally:
        server.stop()
    serving = SERVING_LINE.findall(server.log())
    assert serving == [(f'http://127.0.0.1:{port}', str(port), str(folder / 'data' / 'spendgauge.db'))], server.log()
    assert 'ready to go' not in server.log(), "one line says where it serves: ours, not NiceGUI's as well"
    assert f'created the database: {folder / "data" / "spendgauge.db"}' in server.log()


def test_a_server_listening_everywhere_is_asked_on_loopback_with_the_token_of_dotenv(tmp_path: Path) -> None:
    port = free_port()
    folder = with_dotenv(tmp_path / 'public', f'SPENDGAUGE_HOST=0.0.0.0\nSPENDGAUGE_PORT={port}\n'
                                              f'SPENDGAUGE_API_TOKENS={TOKEN}\nSPENDGAUGE_STORAGE_SECRET={"s" * 32}\n')
    server = start_server(folder, port=port, dotenv=True)
    try:
        assert httpx.get(f'http://127.0.0.1:{port}/api/v1/budget/summary').status_code == 401
        status = ok(run([SPENDGAUGE, 'status', '--json'], folder, SPENDGAUGE_ENV_FILE='.env'))
        assert '"spent_micros": 0' in status.stdout
        wrong = run([SPENDGAUGE, '--token', 'not-the-token', 'status'], folder, SPENDGAUGE_ENV_FILE='.env')
        assert '401' in assert_one_line_error(wrong, 1), '--token before the command wins over .env'
    finally:
        server.stop()
    serving = SERVING_LINE.search(server.log())
    assert serving and serving.group(1) == f'http://127.0.0.1:{port}', server.log()


def test_global_options_go_before_or_after_the_command(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        for argv in (['--url', server.url, 'status'], ['status', '--url', server.url],
                     ['--url', 'http://127.0.0.1:9', 'status', '--url', server.url]):  # the one after wins
            parse_gauge(ok(run([SPENDGAUGE, *argv], tmp_path)).stdout)
        ok(run([sys.executable, '-m', 'app', '--url', server.url, 'limits', 'list'], tmp_path))
        ok(run([SPENDGAUGE, '--db', server.database_url, 'token', 'list'], tmp_path))
    finally:
        server.stop()
    assert_usage_error(run([SPENDGAUGE, '--url', server.url, 'token', 'list'], tmp_path), '--url does not apply',
                       'token')
    assert_usage_error(run([SPENDGAUGE, '--token', 'x', 'serve'], tmp_path), '--token does not apply')


def test_a_second_serve_on_a_busy_port_says_so_before_touching_anything(tmp_path: Path) -> None:
    first = start_server(tmp_path)
    port = first.url.rsplit(':', 1)[1]
    try:
        for host in ('127.0.0.1', '0.0.0.0'):
            database = tmp_path / f'second-{host}.db'
            started = time.monotonic()
            env = {'SPENDGAUGE_API_TOKENS': TOKEN, 'SPENDGAUGE_STORAGE_SECRET': 's' * 32}
            result = cli('serve', '--host', host, '--port', port, '--db', f'sqlite:///{database}', cwd=tmp_path, **env)
            assert time.monotonic() - started < 15
            line = assert_one_line_error(result, 1)
            assert line == f'spendgauge: port {port} on {host} is in use; set SPENDGAUGE_PORT or pass --port'
            assert not database.exists(), 'refused before the migrations'
        assert httpx.get(first.api + '/health').status_code == 200, 'the first server is untouched'
    finally:
        first.stop()


def test_port_0_serves_on_a_free_port_and_says_which(tmp_path: Path) -> None:
    log = tmp_path / 'serve.log'
    with open(log, 'w') as out:
        process = subprocess.Popen([sys.executable, '-m', 'app', 'serve', '--port', '0', '--db',
                                    f'sqlite:///{tmp_path / "any.db"}'], cwd=tmp_path, stdout=out,
                                   stderr=subprocess.STDOUT, env=clean_env(SPENDGAUGE_ENV_FILE=''))
    try:
        deadline = time.monotonic() + 30
        while not (found := SERVING_LINE.search(log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        url, port, database = found.groups()
        assert port != '8080' and database == str(tmp_path / 'any.db')
        assert httpx.get(url + '/api/v1/health').json()['status'] == 'ok', 'the line comes once it listens'
    finally:
        process.terminate()
        process.wait(15)
