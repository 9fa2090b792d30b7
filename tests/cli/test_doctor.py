"""`spendgauge doctor` and `spendgauge migrate` as real subprocesses on real databases (SQLite and PostgreSQL), the
spend sources played by real HTTP servers on 127.0.0.1 (a key accepted, one refused with the upstream's reason, one
that never answers, one whose clock is a minute off), a real SMTP server and a real webhook receiver."""
from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from services.core.db import head_revision
from tests.conftest import fresh_postgres_engine, postgres_url
from tests.services.alerting.test_notify import SMTP_PASSWORD, Mailbox, smtp_server  # noqa: F401 (fixture)
from tests.support.cli import Result, assert_usage_error, cli, ok
from tests.support.fake_api import FakeAPI, Reply, Request
from tests.support.servers import start_server

HANG_S = 30  # longer than the doctor may take: it must give up on its own


def doctor(tmp_path: Path, *args: str, **env: str) -> tuple[Result, dict[str, dict[str, Any]]]:
    result = cli('doctor', '--json', *args, cwd=tmp_path, **env)
    assert 'Traceback' not in result.stderr, str(result)
    return result, {f['check']: f for f in json.loads(result.stdout)['findings']}


def test_sources_smtp_and_webhook_checked_at_once_within_the_timeout(
        tmp_path: Path, database_url: str, smtp_server: tuple[int, Mailbox]) -> None:  # noqa: F811
    port, box = smtp_server
    with FakeAPI() as openai, FakeAPI() as anthropic, FakeAPI() as openrouter, FakeAPI() as hook:
        openai.route('/v1/organization/costs', {'object': 'page', 'data': [], 'has_more': False})
        anthropic.route('/v1/organizations/cost_report', Reply(
            {'type': 'error', 'error': {'type': 'authentication_error', 'message': 'invalid x-api-key'}}, status=401))
        openrouter.route('/api/v1/key', Reply({'data': {}}, delay=HANG_S))
        env = {'SPENDGAUGE_OPENAI_ADMIN_KEY': 'sk-admin-good', 'SPENDGAUGE_OPENAI_URL': openai.url,
               'SPENDGAUGE_ANTHROPIC_ADMIN_KEY': 'sk-ant-admin-wrong-key', 'SPENDGAUGE_ANTHROPIC_URL': anthropic.url,
               'SPENDGAUGE_OPENROUTER_KEY': 'sk-or-hangs', 'SPENDGAUGE_OPENROUTER_URL': openrouter.url,
               'SPENDGAUGE_ALERT_WEBHOOK_URL': hook.url + '/hooks/secret-path',
               'SPENDGAUGE_SMTP_HOST': '127.0.0.1', 'SPENDGAUGE_SMTP_PORT': str(port), 'SPENDGAUGE_SMTP_USER': 'mailer',
               'SPENDGAUGE_SMTP_PASSWORD': SMTP_PASSWORD, 'SPENDGAUGE_SMTP_TO': 'ops@test',
               'SPENDGAUGE_SMTP_STARTTLS': 'false'}
        started = time.monotonic()
        result, found = doctor(tmp_path, '--db', database_url, '--timeout', '2', **env)
        took = time.monotonic() - started

        assert result.returncode == 1, str(result)  # a check failed
        assert took < 2 + 1 + 5, f'{took:.1f} s: the checks did not run at once within their timeout'
        assert found['database']['status'] == 'ok' and head_revision() in found['database']['detail']
        assert found['price data']['status'] == 'ok' and 'bundled with genai-prices' in found['price data']['detail']
        if database_url.startswith('sqlite'):
            assert found['sqlite wal']['status'] == 'ok'
            assert found['disk']['status'] == 'ok' and 'MiB free' in found['disk']['detail']
        else:
            assert 'sqlite wal' not in found and found['disk']['status'] == 'skip'

        assert found['source openai_direct']['status'] == 'ok'
        costs = openai.hits('/v1/organization/costs')
        assert len(costs) == 1 and costs[0].headers['authorization'] == 'Bearer sk-admin-good'
        refused = found['source anthropic_direct']
        assert refused['status'] == 'fail' and 'answered 401: invalid x-api-key' in refused['detail']
        assert 'SPENDGAUGE_ANTHROPIC_ADMIN_KEY' in refused['fix']
        assert anthropic.hits()[0].headers['x-api-key'] == 'sk-ant-admin-wrong-key'
        hung = found['source openrouter_direct']
        assert hung['status'] == 'fail' and 'no answer within 2 s' in hung['detail']
        assert found['clock']['status'] == 'ok' and 'openai_direct' in found['clock']['detail']

        assert found['webhook alerts']['status'] == 'ok' and 'secret-path' not in found['webhook alerts']['detail']
        assert hook.hits() == []  # connected, nothing sent
        assert found['smtp']['status'] == 'ok' and 'login as mailer' in found['smtp']['detail']
        assert box.auth == [f'\x00mailer\x00{SMTP_PASSWORD}'] and box.messages == []
        for secret in ('sk-admin-good', 'sk-ant-admin-wrong-key', 'sk-or-hangs', SMTP_PASSWORD):
            assert secret not in result.stdout

        text = cli('doctor', '--db', database_url, '--timeout', '2', cwd=tmp_path, **env)
        assert text.returncode == 1, str(text)
        lines = text.stdout.splitlines()
        assert lines[0].startswith('OK    database') and any(line.startswith('FAIL  source anthropic_direct')
                                                              for line in lines)
        fix = lines[next(i for i, line in enumerate(lines) if 'source anthropic_direct' in line) + 1]
        assert fix.strip().startswith('fix: SPENDGAUGE_ANTHROPIC_ADMIN_KEY')
        counts = '8 ok, 0 warnings, 2 failed, 0 not configured' if database_url.startswith('sqlite') \
            else '6 ok, 0 warnings, 2 failed, 1 not configured'  # PostgreSQL: no WAL check, its disk is not ours
        assert lines[-1].startswith(counts), str(text)


def test_a_clock_off_by_a_minute_warns_and_a_refused_login_fails(
        tmp_path: Path, database_url: str, smtp_server: tuple[int, Mailbox]) -> None:  # noqa: F811
    port, box = smtp_server
    with FakeAPI() as proxy:
        def a_minute_ahead(_: Request) -> Reply:
            ahead = datetime.now(UTC) + timedelta(seconds=60)
            return Reply({'results': [], 'metadata': {}}, headers={'Date': format_datetime(ahead, usegmt=True)})
        proxy.handler('/user/daily/activity', a_minute_ahead)
        env = {'SPENDGAUGE_LITELLM_URL': proxy.url, 'SPENDGAUGE_LITELLM_MASTER_KEY': 'sk-master'}
        result, found = doctor(tmp_path, '--db', database_url, **env)
        assert result.returncode == 0, str(result)  # warnings only
        assert found['source litellm']['status'] == 'ok'
        clock = found['clock']
        assert clock['status'] == 'warn' and 'behind litellm' in clock['detail'] and 'NTP' in clock['fix']
        skew = float(clock['detail'].split(' s ')[0])
        assert 59 <= skew <= 61  # a Date header is whole seconds
        strict, _ = doctor(tmp_path, '--db', database_url, '--strict', **env)
        assert strict.returncode == 1, str(strict)
        halves, found = doctor(tmp_path, '--db', database_url, SPENDGAUGE_LITELLM_URL=proxy.url)
        assert halves.returncode == 0, str(halves)  # a source configured by halves is off, not broken
        assert found['source litellm']['status'] == 'warn' and 'SPENDGAUGE_LITELLM_MASTER_KEY' in \
            found['source litellm']['fix']

    box.tls = None
    result, found = doctor(tmp_path, '--db', database_url, SPENDGAUGE_SMTP_HOST='127.0.0.1',
                           SPENDGAUGE_SMTP_PORT=str(port), SPENDGAUGE_SMTP_TO='ops@test')
    smtp = found['smtp']  # STARTTLS is on by default, and this server offers none
    assert smtp['status'] == 'fail' and 'offers no STARTTLS' in smtp['detail'] and result.returncode == 1


def test_an_unmigrated_database_fails_until_migrate(tmp_path: Path, database_url: str) -> None:
    if database_url.startswith('sqlite'):
        path = Path(database_url.removeprefix('sqlite:///'))
        for suffix in ('', '-wal', '-shm'):
            Path(f'{path}{suffix}').unlink(missing_ok=True)
        with sqlite3.connect(path) as conn:  # a SQLite file SpendGauge never opened: no schema, no WAL
            conn.execute('CREATE TABLE other (a)')
    else:
        fresh_postgres_engine(postgres_url()).dispose()  # the public schema emptied
    result, found = doctor(tmp_path, '--db', database_url)
    assert result.returncode == 1, str(result)
    assert found['database']['status'] == 'fail' and 'never migrated' in found['database']['detail']
    assert 'spendgauge migrate' in found['database']['fix']
    assert found['price data']['status'] == 'skip'
    if database_url.startswith('sqlite'):
        assert found['sqlite wal']['status'] == 'warn' and 'journal mode delete' in found['sqlite wal']['detail']

    migrated = ok(cli('migrate', '--db', database_url, cwd=tmp_path)).stdout
    assert f'schema migrated from nothing to {head_revision()}' in migrated
    assert 'already at the newest revision' in ok(cli('migrate', '--db', database_url, cwd=tmp_path)).stdout
    result, found = doctor(tmp_path, '--db', database_url)
    assert result.returncode == 0, str(result)
    assert found['database']['status'] == 'ok' and found.get('sqlite wal', {'status': 'ok'})['status'] == 'ok'


def test_a_missing_database_is_not_created_and_bad_usage_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / 'nowhere' / 'spendgauge.db'
    result, found = doctor(tmp_path, '--db', f'sqlite:///{missing}')
    assert result.returncode == 1 and found['database']['status'] == 'fail', str(result)
    assert f'no database at {missing}' in found['database']['detail']
    assert not missing.parent.exists()  # diagnosing changes nothing
    assert found['disk']['status'] == 'ok' and str(tmp_path) in found['disk']['detail']
    assert 'disk (audit log)' not in found  # the log is off
    logs = tmp_path / 'logs' / 'audit'  # made by the server when it first writes: its nearest folder is checked
    result, found = doctor(tmp_path, '--db', f'sqlite:///{missing}', SPENDGAUGE_AUDIT_LOG=str(logs))
    assert found['disk (audit log)']['status'] == 'ok' and str(tmp_path) in found['disk (audit log)']['detail']
    settings = tmp_path / 'doctor.env'  # the settings the server reads: a .env file, then the environment
    settings.write_text(f'SPENDGAUGE_DATABASE_URL=sqlite:///{missing}\n')
    result, found = doctor(tmp_path, SPENDGAUGE_ENV_FILE=str(settings))
    assert result.returncode == 1 and f'no database at {missing}' in found['database']['detail'], str(result)
    result, found = doctor(tmp_path, '--db', 'mysql://x@h/db')
    assert found['database']['status'] == 'fail' and 'cannot be used' in found['database']['detail']
    result, found = doctor(tmp_path, SPENDGAUGE_PORT='eighty')
    assert result.returncode == 1 and list(found) == ['settings'], str(result)
    assert 'SPENDGAUGE_PORT' in found['settings']['detail'] and '.env' in found['settings']['fix']
    assert_usage_error(cli('doctor', '--timeout', '0', cwd=tmp_path), '--timeout')
    assert_usage_error(cli('doctor', '--timeout', 'soon', cwd=tmp_path), '--timeout')


def test_an_admin_asks_the_server(tmp_path: Path, database_url: str) -> None:
    """GET /api/v1/doctor: the same checks on the server's own settings; for admins only (tests/api/test_access.py
    holds every role to that)."""
    server = start_server(tmp_path, database_url, token='doctor-admin-token')
    try:
        with server.client('doctor-admin-token') as api:
            answer = api.get('/doctor', params={'timeout': 2})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            found = {f['check']: f for f in body['findings']}
            assert found['database']['status'] == 'ok' and found['smtp']['status'] == 'skip'
            assert (body['ok'], body['exit_code']) == (True, 0)
            assert api.get('/doctor', params={'timeout': 0}).status_code == 422
    finally:
        server.stop()
