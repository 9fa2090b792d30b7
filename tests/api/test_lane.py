"""The API lane (app/api/lane.py), on a real server: API requests skip NiceGUI's page middlewares, pages keep them."""
from __future__ import annotations

import httpx

from tests.support.servers import Server


def test_api_answers_carry_no_session_cookie_and_pages_do(api: httpx.Client, server: Server) -> None:
    check = api.post('/check', json={'agent_id': 'lane'})
    assert check.status_code == 200, check.text
    assert 'set-cookie' not in check.headers  # NiceGUI's session middleware did not run
    missing = api.get('/no-such-route')
    assert missing.status_code == 404 and 'set-cookie' not in missing.headers
    page = httpx.get(server.url + '/')  # the dashboard: this server has no login
    assert page.status_code == 200
    assert page.headers.get('set-cookie', '').startswith('session='), page.headers
