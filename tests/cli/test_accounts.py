"""`spendgauge token ...` and `spendgauge user ...`: on the database itself, heard by a running server at once."""
from __future__ import annotations

import sys
from pathlib import Path

import httpx

from tests.support.cli import assert_one_line_error, cli, ok, run
from tests.support.servers import start_server
from tests.support.wait import eventually

PASSWORD = 'correct horse battery'


def test_a_token_made_on_the_database_works_on_the_running_server_and_revoking_it_stops_it(tmp_path: Path) -> None:
    srv = start_server(tmp_path, token='a' * 32)
    db = srv.database_url
    try:
        created = ok(cli('token', 'create', '--role', 'read', '--name', 'grafana', '--db', db, cwd=tmp_path))
        token = created.stdout.strip()
        assert token.startswith('sg_') and 'shown only now' in created.stderr
        headers = {'Authorization': f'Bearer {token}'}
        eventually(lambda: httpx.get(srv.api + '/eco', headers=headers).status_code == 200)
        assert httpx.post(srv.api + '/eco', headers=headers, json={'eco_mode': True}).status_code == 403

        listed = ok(cli('token', 'list', '--db', db, cwd=tmp_path)).stdout
        assert 'grafana' in listed and token[:10] in listed and token not in listed
        token_id = listed.splitlines()[1].split()[0]
        ok(cli('token', 'revoke', token_id, '--db', db, cwd=tmp_path))
        eventually(lambda: httpx.get(srv.api + '/eco', headers=headers).status_code == 401)
        assert '1' in assert_one_line_error(cli('token', 'revoke', token_id, '--db', db, cwd=tmp_path), 1)
    finally:
        srv.stop()


def test_users_are_created_listed_and_kept_with_one_admin(tmp_path: Path) -> None:
    db = f'sqlite:///{tmp_path / "users.db"}'

    def user(*args: str, stdin: str | None = None) -> str:
        result = run([sys.executable, '-m', 'app', 'user', *args, '--db', db], tmp_path, stdin=stdin)
        assert result.returncode == 0, result
        return result.stdout

    assert 'created admin admin' in user('create', '--admin', '--password-stdin', stdin=PASSWORD + '\n')
    assert 'read-only user reed' in user('create', 'reed', '--read-only', '--password-stdin', stdin=PASSWORD + '\n')
    listing = user('list')
    assert 'admin' in listing and 'reed' in listing and PASSWORD not in listing
    last = cli('user', 'delete', 'admin', '--db', db, cwd=tmp_path)
    assert 'last admin' in assert_one_line_error(last, 1)
    short = run([sys.executable, '-m', 'app', 'user', 'create', 'eve', '--admin', '--password-stdin',
                 '--db', db], tmp_path, stdin='short\n')
    assert 'at least 10 characters' in assert_one_line_error(short, 2)
    assert 'sessions are logged out' in user('password', 'reed', '--password-stdin', stdin='another long one\n')
    assert 'deleted reed' in user('delete', 'reed')


def test_only_the_create_commands_make_the_default_database_and_they_say_where(tmp_path: Path) -> None:
    """The first token or admin may come before the first `serve`; a listing in the wrong folder is refused
    instead of leaving an empty ./data there."""
    database = tmp_path / 'data' / 'spendgauge.db'
    for args in (('token', 'list'), ('user', 'list'), ('token', 'revoke', '1')):
        line = assert_one_line_error(cli(*args, cwd=tmp_path), 1)
        assert line.startswith(f'spendgauge: no database at {database}: pass --db, set SPENDGAUGE_DATABASE_URL'), line
    assert not (tmp_path / 'data').exists()

    created = ok(cli('token', 'create', '--role', 'ingest', cwd=tmp_path))
    assert created.stderr.splitlines()[0] == (f'spendgauge: creating the database {database} (SPENDGAUGE_DATABASE_URL '
                                              'or --db choose another)')
    assert database.is_file()
    listed = ok(cli('token', 'list', cwd=tmp_path))
    assert 'ingest' in listed.stdout and listed.stderr == ''
