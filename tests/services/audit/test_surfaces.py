"""Each surface records its own actor: a page action (NiceGUI's simulated user, logged in), a REST call with a bearer
token, and the CLI run as a real subprocess on the database; then GET /api/v1/audit and `spendgauge audit` read
them back (admins only, bad filters refused with a clear 4xx)."""
from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from nicegui.testing import User

from app import runtime
from services.core.access import SYSTEM, Role
from services.core.tables import AUDIT_LOG
from tests.support.cli import assert_one_line_error, cli, ok
from tests.support.pages import PATIENT, settle

PASSWORD = 'correct horse battery'


def actions() -> list[tuple[str, str]]:
    rt = runtime.current()
    with rt.engine.connect() as conn:
        return [(r.actor, r.action) for r in conn.execute(AUDIT_LOG.select().order_by(AUDIT_LOG.c.id))]


async def test_a_page_an_api_call_and_the_cli_each_record_their_actor(user: User, tmp_path: Path) -> None:
    await user.open('/')
    rt = runtime.current()
    rt.commands.accounts.create_user(SYSTEM, 'ada', PASSWORD, Role.ADMIN)
    admin = rt.commands.accounts.create_token(SYSTEM, Role.ADMIN, 'grafana')['token']
    reader = rt.commands.accounts.create_token(SYSTEM, Role.READ, 'viewer')['token']
    await user.open('/login')
    user.find(marker='login-user').type('ada')
    user.find(marker='login-password').type(PASSWORD)
    user.find(marker='login-submit').click()
    await user.should_see(marker='logout', retries=PATIENT)

    user.find(marker='eco-toggle').click()  # the page: eco on, as ada
    await settle(lambda: ('ada', 'eco.switch') in actions())
    answer = await user.http_client.post('/api/v1/eco', json={'eco_mode': False},
                                         headers={'Authorization': f'Bearer {admin}'})
    assert answer.status_code == 200, answer.text
    database = rt.settings.database_url
    ok(await asyncio.to_thread(cli, 'eco', 'on', '--reason', 'from the shell', '--db', database, cwd=tmp_path))

    assert actions() == [('spendgauge', 'accounts.create_user'), ('spendgauge', 'accounts.create_token'),
                         ('spendgauge', 'accounts.create_token'), ('ada', 'eco.switch'),
                         ('token grafana', 'eco.switch'), ('cli', 'eco.switch')]

    page = (await user.http_client.get('/api/v1/audit', params={'action': 'eco.*', 'limit': 2},
                                       headers={'Authorization': f'Bearer {admin}'})).json()
    assert [(r['actor'], r['after']['eco_mode']) for r in page['items']] == [('cli', True), ('token grafana', False)]
    assert page['items'][0]['after']['reason'] == 'from the shell' and page['next_cursor']
    rest = (await user.http_client.get('/api/v1/audit', params={'action': 'eco.*', 'cursor': page['next_cursor']},
                                       headers={'Authorization': f'Bearer {admin}'})).json()
    assert [r['actor'] for r in rest['items']] == ['ada'] and rest['next_cursor'] is None
    tokens = (await user.http_client.get('/api/v1/audit', params={'action': 'accounts.create_token'},
                                         headers={'Authorization': f'Bearer {admin}'})).json()['items']
    assert {r['after']['token'] for r in tokens} == {'***'}  # the token itself never enters the trail

    refused = await user.http_client.get('/api/v1/audit', headers={'Authorization': f'Bearer {reader}'})
    assert refused.status_code == 403
    for params, fragment in (({'from': '2026-12-05', 'to': '2026-12-01'}, 'before to'),
                             ({'from': '1990-01-01'}, 'between'), ({'from': '2001-01-01', 'to': '2026-01-01'},
                                                                   'ten years'),
                             ({'cursor': 'nonsense'}, 'cursor'), ({'limit': 5000}, 'limit')):
        bad = await user.http_client.get('/api/v1/audit', params=params,
                                         headers={'Authorization': f'Bearer {admin}'})
        assert bad.status_code == 422 and fragment in bad.text, (params, bad.text)

    shown = ok(await asyncio.to_thread(cli, 'audit', '--actor', 'cli', '--json', '--db', database, cwd=tmp_path))
    assert [(r['actor'], r['action']) for r in json.loads(shown.stdout)['items']] == [('cli', 'eco.switch')]
    table = ok(await asyncio.to_thread(cli, 'audit', '--action', 'eco.*', '--db', database, cwd=tmp_path))
    rows = [re.split(r'\s{2,}', line.strip()) for line in table.stdout.splitlines()]
    assert rows[0] == ['id', 'at', 'actor', 'action', 'target'], table.stdout
    assert [(r[2], r[3], r[4]) for r in rows[1:]] == [('cli', 'eco.switch', 'eco_mode'),
                                                      ('token grafana', 'eco.switch', 'eco_mode'),
                                                      ('ada', 'eco.switch', 'eco_mode')], table.stdout
    wrong = await asyncio.to_thread(cli, 'audit', '--from', 'yesterday', '--db', database, cwd=tmp_path)
    assert 'from: not an ISO datetime' in assert_one_line_error(wrong, 2)
