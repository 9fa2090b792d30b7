"""The doors in front of everything: the exposure rule on every way of starting, and the request guard (Host checks
against DNS rebinding, cross-site and non-JSON writes, the login redirect) on a real server process."""
from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import Result, cli, run
from tests.support.servers import ROOT, Server, free_port, start_server

SECRET = 's' * 32
ADMIN_TOKEN = 't' * 32


def _refused(result: Result, *words: str) -> None:
    assert result.returncode != 0, result
    text = result.stdout + result.stderr
    assert 'Traceback' not in text, text
    for word in words:
        assert word in text, text


# --- the exposure rule --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('how', ['serve', 'python -m app', 'python main.py'])
def test_a_public_bind_without_authentication_refuses_to_start(tmp_path: Path, how: str) -> None:
    argv = {'serve': [sys.executable, '-m', 'app', 'serve'], 'python -m app': [sys.executable, '-m', 'app'],
            'python main.py': [sys.executable, str(ROOT / 'main.py')]}[how]
    db = tmp_path / 'public.db'
    result = run(argv, tmp_path, 60, SPENDGAUGE_HOST='0.0.0.0', SPENDGAUGE_PORT=str(free_port()),
                 SPENDGAUGE_DATABASE_URL=f'sqlite:///{db}', SPENDGAUGE_STORAGE_SECRET=SECRET)
    _refused(result, 'without authentication', 'spendgauge user create')
    assert not db.exists(), 'refused before creating the database'


@pytest.mark.parametrize('secret', ['', 'spendgauge-local', 'short'], ids=['unset', 'default', 'short'])
@pytest.mark.parametrize('how', ['serve', 'python main.py'])
def test_a_public_bind_needs_a_real_storage_secret(tmp_path: Path, secret: str, how: str) -> None:
    argv = [sys.executable, '-m', 'app', 'serve'] if how == 'serve' else [sys.executable, str(ROOT / 'main.py')]
    result = run(argv, tmp_path, 60, SPENDGAUGE_HOST='0.0.0.0', SPENDGAUGE_PORT=str(free_port()),
                 SPENDGAUGE_DATABASE_URL=f'sqlite:///{tmp_path / "public.db"}', SPENDGAUGE_API_TOKENS=ADMIN_TOKEN,
                 SPENDGAUGE_STORAGE_SECRET=secret)
    _refused(result, 'SPENDGAUGE_STORAGE_SECRET')


def test_a_user_in_the_database_is_enough_authentication(tmp_path: Path) -> None:
    db = f'sqlite:///{tmp_path / "users.db"}'
    created = run([sys.executable, '-m', 'app', 'user', 'create', 'ada', '--admin', '--password-stdin', '--db', db],
                  tmp_path, stdin='a long password\n')
    assert created.returncode == 0, created
    srv = start_server(tmp_path, database_url=db, SPENDGAUGE_HOST='0.0.0.0', SPENDGAUGE_STORAGE_SECRET=SECRET)
    try:
        assert httpx.get(srv.api + '/health').status_code == 200
        assert httpx.get(srv.api + '/eco').status_code == 401  # a user exists: the API wants a token
    finally:
        srv.stop()


# --- the request guard --------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A loopback server with nothing configured: no login, the zero-config single developer."""
    srv = start_server(tmp_path_factory.mktemp('local'), SPENDGAUGE_ALLOWED_HOSTS='spend.example.com')
    yield srv
    srv.stop()


def eco(srv: Server) -> bool:
    return bool(httpx.get(srv.api + '/eco').json()['eco_mode'])


@pytest.mark.parametrize('host', ['evil.example', 'evil.example:8080', '10.0.0.7', 'spend.example.com.evil.example'])
def test_a_loopback_server_answers_only_to_its_own_names(local: Server, host: str) -> None:
    """DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example."""
    for path in ('/', '/api/v1/eco', '/api/v1/health'):
        response = httpx.get(local.url + path, headers={'Host': host})
        assert response.status_code == 421, (path, response.text)
        assert 'SPENDGAUGE_ALLOWED_HOSTS' in response.json()['detail']
    response = httpx.post(local.api + '/eco', headers={'Host': host}, json={'eco_mode': True})
    assert response.status_code == 421
    assert not eco(local)


@pytest.mark.parametrize('host', ['localhost', '127.0.0.1', 'spend.example.com', 'SPEND.example.com:443'])
def test_its_own_names_are_answered(local: Server, host: str) -> None:
    assert httpx.get(local.api + '/health', headers={'Host': host}).status_code == 200


@pytest.mark.parametrize(('headers', 'why'), [
    ({'Origin': 'https://evil.example'}, 'origin'),
    ({'Origin': 'null'}, 'opaque'),
    ({'Sec-Fetch-Site': 'cross-site'}, 'cross-site'),
], ids=['foreign origin', 'opaque origin', 'fetch metadata'])
def test_cross_site_writes_are_refused(local: Server, headers: dict[str, str], why: str) -> None:
    for method, path, body in (('POST', '/eco', {'eco_mode': True}), ('POST', '/agents/anyone/pause', None),
                               ('PUT', '/budget/limits/day', {'limit_usd': '999999'})):
        response = httpx.request(method, local.api + path, headers=headers, json=body)
        assert response.status_code == 403, (path, response.text)
        assert why in response.json()['detail']
    assert not eco(local)
    assert httpx.get(local.api + '/budget/limits').json()['day']['limit_micros'] == 5_000_000


def test_same_origin_and_configured_origins_may_write(local: Server) -> None:
    for origin in (local.url, 'https://spend.example.com'):
        response = httpx.post(local.api + '/eco', headers={'Origin': origin}, json={'eco_mode': False})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize('content_type', ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data',
                                          None])
def test_writes_take_only_json(local: Server, content_type: str | None) -> None:
    """A form or `text/plain` fetch needs no CORS preflight: refusing them closes the simple-request door."""
    headers = {'Content-Type': content_type} if content_type else {}
    events = b'{"events": [{"model": "gpt-4o", "agent_id": "csrf"}]}'
    response = httpx.post(local.api + '/usage/batch', content=events, headers=headers)
    assert response.status_code == 415, response.text
    assert 'application/json' in response.json()['detail']
    assert httpx.get(local.api + '/usage', params={'agent_id': 'csrf'}).json()['items'] == []


def test_json_with_a_charset_is_json(local: Server) -> None:
    response = httpx.post(local.api + '/check', content=b'{"agent_id": "a"}',
                          headers={'Content-Type': 'application/json; charset=utf-8'})
    assert response.status_code == 200, response.text


def test_login_redirect_once_secured(tmp_path: Path) -> None:
    srv = start_server(tmp_path, SPENDGAUGE_ADMIN_PASSWORD='a long admin password')
    try:
        for path in ('/', '/policies', '/settings'):
            response = httpx.get(srv.url + path, follow_redirects=False)
            assert response.status_code == 303, path
            assert response.headers['location'].startswith('/login?next=')
        assert httpx.get(srv.url + '/login').status_code == 200
        assert httpx.get(srv.api + '/eco').status_code == 401
    finally:
        srv.stop()


def test_cli_creates_the_first_admin_from_stdin_only(tmp_path: Path) -> None:
    result = cli('user', 'create', '--admin', '--db', f'sqlite:///{tmp_path / "x.db"}', cwd=tmp_path)
    _refused(result, '--password-stdin')


def _upgrade(srv: Server, origin: str) -> int:
    """The status a websocket upgrade of the page's socket gets (101: accepted)."""
    host, port = srv.url.removeprefix('http://').split(':')
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f'GET /_nicegui_ws/socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}:{port}\r\n'
                     f'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
                     f'Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n'.encode())
        return int(conn.recv(1024).split(b' ', 2)[1])


def test_the_page_socket_refuses_other_origins(local: Server) -> None:
    """Cross-site websocket hijacking: a page of evil.example opening the dashboard's socket."""
    assert _upgrade(local, 'https://evil.example') == 403
    assert _upgrade(local, local.url) == 101
