"""Logging in with a real browser (Debian's chromium) to a server that has users: an admin changes eco mode, a
read-only user sees the same dashboard with every control disabled and cannot change eco mode, pause an agent, edit
a policy or sync — checked through the API afterwards. At 1440 px and at 390 px, light and dark."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.browser import Browser, Tab, log_in, start_login_server
from tests.support.servers import Server

ADMIN_TOKEN = 'a' * 32
PASSWORD = 'correct horse battery'


@pytest.fixture(scope='module')
def server(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_login_server(tmp_path_factory.mktemp('login'), {'ada': '--admin', 'reed': '--read-only'}, PASSWORD,
                             ADMIN_TOKEN)
    with srv.client() as api:
        api.post('/usage', json={'model': 'gpt-4o', 'agent_id': 'coder', 'session_id': 's1', 'input_tokens': 100,
                                 'output_tokens': 10}).raise_for_status()
        api.post('/policies', json={'name': 'daily block', 'limit_usd': '5', 'action': 'block'}).raise_for_status()
    yield srv
    srv.stop()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def state(api: httpx.Client) -> tuple[bool, bool, list[tuple[str, str]], str | None]:
    eco = api.get('/eco').json()['eco_mode']
    paused = any(a['paused'] for a in api.get('/agents').json()['items'])
    policies = sorted((p['name'], p['limit_usd']) for p in api.get('/policies').json()['items'])
    runs = api.get('/sync/status').json()['sources']
    return eco, paused, policies, str(runs)


@pytest.mark.parametrize(('width', 'dark'), [(1440, False), (390, True)], ids=['1440 light', '390 dark'])
def test_read_only_user_cannot_change_anything(browser: Browser, server: Server, api: httpx.Client, width: int,
                                               dark: bool) -> None:
    tab = Tab(browser, width, 900)
    try:
        page = log_in(tab, server, 'reed', PASSWORD)
        page.get_by_text('Eco mode').wait_for()
        if not dark:
            page.locator('[aria-label="Light or dark"]').click()
        before = state(api)
        page.get_by_text('read-only', exact=True).wait_for()

        eco = page.get_by_role('switch', name='Eco mode')
        assert eco.get_attribute('aria-disabled') == 'true'
        eco.click(force=True)
        pause = page.get_by_role('button', name='Pause')
        assert pause.is_disabled()
        pause.click(force=True)
        sync = page.get_by_role('button', name='Sync now')
        assert sync.is_disabled()
        sync.click(force=True)

        page.goto(server.url + '/policies', wait_until='load')
        page.get_by_text('daily block', exact=False).first.wait_for()
        for button in (page.locator('button:has(i:text("edit"))').first,
                       page.locator('button:has(i:text("delete"))').first,
                       page.get_by_role('button', name='Save')):
            assert button.is_disabled()
            button.click(force=True)
        page.wait_for_timeout(500)  # anything the clicks could have sent has arrived
        assert state(api) == before
        assert page.evaluate('document.documentElement.scrollWidth') <= width + 1
        assert tab.problems == [], tab.problems
    finally:
        tab.close()


def test_admin_logs_in_and_switches_eco_mode(browser: Browser, server: Server, api: httpx.Client) -> None:
    tab = Tab(browser, 1440, 900)
    try:
        page = log_in(tab, server, 'ada', 'not the password')
        page.get_by_text('Wrong name or password').wait_for()
        page.get_by_label('Password').fill(PASSWORD)
        page.get_by_role('button', name='Log in').click()
        page.get_by_text('Eco mode').wait_for()
        was = api.get('/eco').json()['eco_mode']
        page.get_by_role('switch', name='Eco mode').click()
        deadline = 50
        while api.get('/eco').json()['eco_mode'] == was and deadline:
            page.wait_for_timeout(100)
            deadline -= 1
        assert api.get('/eco').json()['eco_mode'] != was
        page.locator('[aria-label="Log out"]').click()
        page.wait_for_url('**/login')
        page.goto(server.url + '/policies', wait_until='load')
        page.wait_for_url('**/login?next=*')
    finally:
        tab.close()


def test_screenshot_of_the_login_page(browser: Browser, server: Server) -> None:
    tab = Tab(browser, 1440, 900)
    try:
        tab.page.goto(server.url + '/login', wait_until='load')
        tab.page.get_by_role('button', name='Log in').wait_for()
        shots = Path(__file__).resolve().parents[2] / 'screenshots'
        shots.mkdir(exist_ok=True)
        tab.page.screenshot(path=str(shots / 'login.png'))
        assert tab.problems == []
    finally:
        tab.close()
