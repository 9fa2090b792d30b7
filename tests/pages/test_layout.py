"""Every page fits a phone (390x844) and a desktop (1440x900), light and dark, in a real browser (Debian's chromium):
no sideways scrolling, no clipped label, the alerts bell and the light/dark button in reach (and working), and the
key columns of the sessions and reports tables in view. One server (with a dashboard user, so the login page exists
and the header carries the most: the read-only badge and log-out), one browser, one logged-in tab per size and theme.
Screenshots of every combination land in screenshots/ (git-ignored).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from components.layout import NAV
from components.report_view import report_rows
from components.sessions_table import session_rows
from components.usage_table import usage_rows
from tests.support.browser import Browser, Locator, Page, Tab, log_in, save_screenshot, start_login_server
from tests.support.servers import Server
from tests.support.wait import eventually

TOKEN = 'L' * 32
USER, PASSWORD = 'reed', 'correct horse battery'
SIZES = {'390x844': (390, 844), '1440x900': (1440, 900)}
THEMES = ('light', 'dark')
PAGES = {'dashboard': '/', 'usage': '/usage', 'sessions': '/sessions', 'policies': '/policies',
         'allocations': '/allocations', 'alerts': '/alerts', 'reports': '/reports', 'optimise': '/optimize',
         'settings': '/settings'}
AGENTS = ('planner', 'researcher', 'coder', 'reviewer', 'tester', 'writer')
MODELS = (('openai', 'gpt-4o'), ('anthropic', 'claude-sonnet-4-5'), ('openrouter', 'openai/gpt-4o-mini'))
SESSIONS = 32  # more than the page lists (30)

# Text that must never be cut off: field labels and values, item labels, table headers, button texts, badges, check
# box labels, and anything shortened with an ellipsis. An element clips its text when its content is wider than its
# box (`scrollWidth > clientWidth`).
LABELS = ('.q-field__label, .q-field__native, .q-item__label, label, th, .q-btn__content span, .q-badge, '
          '.q-checkbox__label, .q-toggle__label, .q-tab__label, .ellipsis')
CLIPPED_JS = """(selector) => [...document.querySelectorAll(selector)]
    .filter((el) => el.getClientRects().length && el.scrollWidth > el.clientWidth)
    .map((el) => `<${el.tagName.toLowerCase()} class="${el.className}"> ${JSON.stringify(el.textContent.trim())}`
                 + ` is ${el.scrollWidth} px wide in ${el.clientWidth} px`)"""
OVERFLOW_JS = '[document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]'


@pytest.fixture(scope='module')
def server(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_login_server(tmp_path_factory.mktemp('layout'), {USER: '--read-only'}, PASSWORD, TOKEN)
    try:
        with srv.client() as api:
            seed(api)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope='module')
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def seed(api: httpx.Client) -> None:
    """A policy with a long name that the seeded spend crosses (so there are alerts), tasks, and 32 sessions of
    today and the last days across six agents and three providers."""
    api.post('/policies', json={'name': 'Researcher crawl budget per day', 'scope': 'agent',
                                'scope_value': 'researcher', 'period': 'day', 'limit_usd': '0.20',
                                'action': 'throttle', 'notify': ['in_app', 'log']}).raise_for_status()
    api.post('/allocations', json={'name': 'Engineering split across the research teams', 'limit_usd': '250',
                                   'shares': [{'scope': 'agent', 'scope_value': 'researcher', 'percent': '60'},
                                              {'scope': 'tag', 'scope_value': 'nightly-regression-suite',
                                               'amount_usd': '75.50'}]}).raise_for_status()
    for title, agent, estimate in (('Crawl the pricing pages of every provider', 'researcher', '0.40'),
                                   ('Review the nightly build', 'reviewer', '1.20')):
        api.post('/tasks', json={'title': title, 'agent_id': agent, 'priority': 3,
                                 'estimated_cost_usd': estimate}).raise_for_status()
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)  # the server's day (UTC)
    events = []
    for i in range(3 * SESSIONS):
        provider, model = MODELS[i % len(MODELS)]
        session = i % SESSIONS
        ts = now - timedelta(hours=session % 4 * 20, minutes=i)
        if session % 4 == 0:  # today's stay today, so the policy is crossed whatever the hour (just after midnight)
            ts = max(ts, midnight)
        events.append({'event_id': f'layout-{i}', 'provider': provider, 'model': model,
                       'channel': 'litellm' if i % 3 else 'direct', 'agent_id': AGENTS[(i + session // 3) % 6],
                       'session_id': f'run-{session:02d}-0b7c2f4e-9d1a-4c4e-8f3b-{session:012d}',
                       'input_tokens': 1000 + 137 * i, 'output_tokens': 200 + 11 * i,
                       'cost_usd': f'{0.05 + 0.013 * (i % 7):.3f}',
                       'ts': ts.isoformat()})
    response = api.post('/usage/batch', json={'events': events})
    assert response.status_code == 200 and response.json()['stored'] == len(events), response.text
    eventually(lambda: bool(api.get('/alerts').json()['items']))  # the crossed policy raises its alerts


@pytest.fixture(scope='module')
def tabs(browser: Browser, server: Server) -> Iterator[dict[tuple[str, str], Tab]]:
    opened: dict[tuple[str, str], Tab] = {}
    yield opened
    for tab in opened.values():
        tab.close()


def new_tab(browser: Browser, size: str) -> Tab:
    tab = Tab(browser, *SIZES[size])
    tab.page.set_default_timeout(5000)  # a button out of reach fails in seconds, not half a minute
    return tab


def logged_in(tabs: dict[tuple[str, str], Tab], browser: Browser, server: Server, size: str, theme: str) -> Tab:
    """The tab of this size and theme, logged in (one per combination, reused by the tests)."""
    if (size, theme) not in tabs:
        tab = new_tab(browser, size)
        log_in(tab, server, USER, PASSWORD).get_by_text('Via LiteLLM:').wait_for()
        if theme == 'light':  # dark is the default; the choice is kept per browser
            toggle_theme(tab.page)
        tabs[size, theme] = tab
    return tabs[size, theme]


def theme_of(page: Page) -> str:
    return 'dark' if page.evaluate('document.body.classList.contains("body--dark")') else 'light'


def toggle_theme(page: Page) -> None:
    was = theme_of(page)
    page.locator('.q-header [aria-label="Light or dark"]').click()
    page.wait_for_function(f'document.body.classList.contains("body--{"light" if was == "dark" else "dark"}")',
                           timeout=3000)


def open_page(tab: Tab, server: Server, path: str) -> Page:
    page = tab.open(server.url + path)
    if path == '/':
        page.wait_for_selector('.nicegui-echart canvas')
        page.get_by_text('Budget settings').click()  # open, so its fields are checked too
        page.get_by_label('Daily limit (USD)').wait_for()
    elif path == '/sessions':
        page.get_by_text('run-00-', exact=False).locator('visible=true').first.wait_for()
    elif path in ('/reports', '/usage'):
        page.locator('.q-table tbody tr, .q-table__grid-content > *').first.wait_for()
    elif path == '/alerts':
        page.get_by_text(re.compile('^(threshold_warning|threshold_critical|limit_exceeded)$')).first.wait_for()
    page.wait_for_timeout(300)  # charts and tables settle into their width
    return page


def problems(tab: Tab) -> list[str]:
    """What went wrong in the page, but requests a navigation cut short (the previous page's, going away)."""
    return [p for p in tab.problems if not (p.startswith('request failed:') and 'ERR_ABORTED' in p)]


def assert_fits(page: Page, where: str) -> None:
    scroll_width, client_width = page.evaluate(OVERFLOW_JS)
    assert scroll_width <= client_width, f'{where} is {scroll_width} px wide in a {client_width} px window'
    assert page.evaluate(CLIPPED_JS, LABELS) == [], f'{where}: clipped labels'


def assert_in_view(page: Page, element: Locator, what: str) -> None:
    """The element is visible and lies within the window's width."""
    element.wait_for(timeout=3000)
    box = element.bounding_box()
    width = page.viewport_size['width'] if page.viewport_size else 0
    assert box is not None and box['x'] >= 0 and box['x'] + box['width'] <= width, f'{what} is at {box}'


def assert_text_in_view(page: Page, text: str, what: str) -> None:
    assert_in_view(page, page.get_by_text(text, exact=True).locator('visible=true').first, f'{what} {text!r}')


def assert_key_columns_in_view(page: Page, api: httpx.Client, name: str) -> None:
    if name == 'sessions':
        first = session_rows(api.get('/sessions').json()['items'][:1], ZoneInfo('UTC'))[0]
        assert_text_in_view(page, first['id'], 'the session id')
        assert_text_in_view(page, first['cost'], 'its cost')
        assert_text_in_view(page, first['agents'], 'its agents')
    elif name == 'usage':
        first = usage_rows(api.get('/usage', params={'limit': '1'}).json()['items'], ZoneInfo('UTC'))[0]
        assert_text_in_view(page, first['agent'], "the newest call's agent")
        assert_text_in_view(page, first['cost'], 'its cost')
    elif name == 'reports':
        first = report_rows(api.get('/reports/summary').json())[0]
        assert_text_in_view(page, first['cost'], "the first row's cost")
        assert_text_in_view(page, first['share_percent'], 'its share')


def assert_header_in_reach(page: Page, server: Server) -> None:
    """The bell and the light/dark button are in the window and work: the theme flips (and back), the bell opens
    the alerts."""
    for label in ('Light or dark', 'Alerts'):
        assert_in_view(page, page.locator(f'.q-header [aria-label="{label}"]'), f'the {label!r} button')
    theme = theme_of(page)
    toggle_theme(page)
    toggle_theme(page)
    assert theme_of(page) == theme
    page.locator('.q-header [aria-label="Alerts"]').click()
    page.wait_for_url(server.url + '/alerts')


@pytest.mark.parametrize('theme', THEMES)
@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('name', PAGES)
def test_page_fits(tabs: dict[tuple[str, str], Tab], browser: Browser, server: Server, api: httpx.Client, name: str,
                   size: str, theme: str) -> None:
    tab = logged_in(tabs, browser, server, size, theme)
    tab.problems.clear()
    page = open_page(tab, server, PAGES[name])
    assert theme_of(page) == theme
    assert_fits(page, f'{name} at {size} ({theme})')
    assert_key_columns_in_view(page, api, name)
    page.evaluate('window.scrollTo(0, 0)')  # the fixed header at the top of the picture
    save_screenshot(page, f'{name}-{size}-{theme}')
    assert problems(tab) == []
    assert_header_in_reach(page, server)


@pytest.mark.parametrize('theme', THEMES)
@pytest.mark.parametrize('size', SIZES)
def test_login_page_fits(browser: Browser, server: Server, size: str, theme: str) -> None:
    """The login page keeps the browser's light/dark choice: log in, choose, log out."""
    tab = new_tab(browser, size)
    try:
        if theme == 'light':
            log_in(tab, server, USER, PASSWORD).get_by_text('Via LiteLLM:').wait_for()
            toggle_theme(tab.page)
            tab.page.goto(server.url + '/logout', wait_until='load')
        else:
            tab.page.goto(server.url + '/login', wait_until='load')
        page = tab.page
        page.get_by_role('button', name='Log in').wait_for()
        page.wait_for_function('window.did_handshake === true')
        assert theme_of(page) == theme
        assert_fits(page, f'login at {size} ({theme})')
        save_screenshot(page, f'login-{size}-{theme}')
        assert problems(tab) == []
    finally:
        tab.close()


@pytest.mark.parametrize('size', SIZES)
def test_a_session_opens_by_click_and_by_keyboard(tabs: dict[tuple[str, str], Tab], browser: Browser,
                                                  server: Server, api: httpx.Client, size: str) -> None:
    """Rows (cards on a phone) look clickable and are: a pointer, Tab reaches them, Enter or a click opens one."""
    tab = logged_in(tabs, browser, server, size, 'dark')
    page = open_page(tab, server, '/sessions')
    first, second = (s['id'] for s in api.get('/sessions').json()['items'][:2])
    rows = page.locator('[role="button"][aria-label^="Open session "]').locator('visible=true')
    assert rows.count() == 30
    assert rows.first.evaluate('(el) => getComputedStyle(el).cursor') == 'pointer'
    page.get_by_role('button', name='Export CSV').focus()
    page.keyboard.press('Tab')
    assert page.evaluate('document.activeElement.getAttribute("aria-label")') == f'Open session {first}'
    page.keyboard.press('Enter')
    page.get_by_text(f'Session {first}', exact=True).wait_for()
    assert_fits(page, f'the breakdown of a session at {size}')
    page.keyboard.press('Escape')
    page.get_by_text(f'Session {first}', exact=True).wait_for(state='hidden')
    rows.nth(1).click()
    page.get_by_text(f'Session {second}', exact=True).wait_for()
    page.get_by_role('button', name='Close').click()


@pytest.mark.parametrize('size', SIZES)
def test_every_link_is_in_reach(tabs: dict[tuple[str, str], Tab], browser: Browser, server: Server,
                                size: str) -> None:
    """On a desktop the links are in the bar; on a phone they are in the menu, with logging out."""
    tab = logged_in(tabs, browser, server, size, 'dark')
    page = open_page(tab, server, '/alerts')
    menu = page.locator('.q-header [aria-label="Menu"]')
    if SIZES[size][0] < 1440:  # the links are inline from 1440 px (components/layout.py)
        assert_in_view(page, menu, 'the menu button')
        menu.click()
        links = page.locator('.q-menu')
        labels = [label for label, _ in NAV] + [f'Log out {USER} (read)']
    else:
        assert not menu.is_visible()
        links = page.locator('.q-header')
        labels = [label for label, _ in NAV]
        assert_in_view(page, links.locator('[aria-label="Log out"]'), 'the log-out button')
    for label in labels:
        assert_in_view(page, links.get_by_text(label, exact=True), f'the link {label!r}')
    links.get_by_text('Reports', exact=True).click()
    page.wait_for_url(server.url + '/reports')
