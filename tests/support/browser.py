"""Debian's chromium driven by Playwright (sync API), for end-to-end tests of the pages against a real server.

Tests that need it are skipped when /usr/bin/chromium or the playwright package is missing, except in CI
(CI=true), where that fails.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support.cli import ok, run
from tests.support.servers import ROOT, Server, start_server
from tests.support.unavailable import unavailable

try:
    from playwright.sync_api import Browser, BrowserContext, Locator, Page, sync_playwright
except ImportError:  # pragma: no cover - a dev dependency
    sync_playwright = None  # type: ignore[assignment]  # the fixture skips the tests then

__all__ = ['CHROMIUM', 'GAUGE_NAME_JS', 'Browser', 'Locator', 'Page', 'Tab', 'launch', 'log_in', 'save_screenshot',
           'unavailable']
CHROMIUM = Path('/usr/bin/chromium')
SCREENSHOTS = ROOT / 'screenshots'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']

# In-page helpers. NiceGUI gives every element a DOM id `c<id>` and `getElement()` returns its Vue component; an
# ui.echart component holds the ECharts instance as `.chart`. The gauge is the chart whose first series is a gauge.
GAUGE_NAME_JS = """() => {
    for (const el of document.querySelectorAll('.nicegui-echart')) {
        const series = getElement(el)?.chart?.getOption()?.series?.[0];
        if (series?.type === 'gauge') return series.data[0].name;
    }
    return null;
}"""

def launch() -> Iterator[Browser]:
    if sync_playwright is None:
        unavailable('the playwright package is not installed (pip install -e .[dev])')
    if not CHROMIUM.is_file():
        unavailable(f"{CHROMIUM} is missing: browser tests need Debian's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Tab:
    """A page in a fresh browser context (its own cookies, so its own dark-mode setting), recording problems."""

    def __init__(self, browser: Browser, width: int, height: int) -> None:
        self.context: BrowserContext = browser.new_context(viewport={'width': width, 'height': height},
                                                          accept_downloads=True)
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on('console', lambda m: self.problems.append(f'console error: {m.text}')
                     if m.type == 'error' else None)
        self.page.on('pageerror', lambda e: self.problems.append(f'page error: {e}'))
        self.page.on('requestfailed', lambda r: self.problems.append(f'request failed: {r.url} {r.failure}'))
        self.page.on('response', lambda r: self.problems.append(f'HTTP {r.status}: {r.url}')
                     if r.status >= 400 else None)

    def open(self, url: str) -> Page:
        self.page.goto(url, wait_until='load')
        self.page.wait_for_function('window.did_handshake === true')  # the websocket is up: updates will arrive
        self.page.get_by_text('SpendGauge', exact=True).wait_for()
        return self.page

    def open_dashboard(self, server: Server) -> Page:
        page = self.open(server.url + '/')
        page.wait_for_selector('.nicegui-echart canvas')
        page.get_by_text('Via LiteLLM:').wait_for()
        page.wait_for_function(GAUGE_NAME_JS)  # the gauge chart is initialised
        return page

    def close(self) -> None:
        self.context.close()


def start_login_server(workdir: Path, users: Mapping[str, str], password: str, token: str) -> Server:
    """A server on a new SQLite file in `workdir` whose pages ask for a login: `users` maps each name to its role
    option (`--admin` or `--read-only`), all with `password`; `token` is an admin API token."""
    db = f'sqlite:///{workdir / "spendgauge.db"}'
    for name, role in users.items():
        ok(run([sys.executable, '-m', 'app', 'user', 'create', name, role, '--password-stdin', '--db', db], workdir,
               stdin=password + '\n'))
    return start_server(workdir, database_url=db, token=token, SPENDGAUGE_LOG_LEVEL='WARNING')


def log_in(tab: Tab, server: Server, name: str, password: str) -> Page:
    """Open the dashboard, which sends a server with users to the login page, and log in there."""
    page = tab.page
    page.goto(server.url + '/', wait_until='load')
    page.wait_for_url('**/login?next=*')
    page.wait_for_function('window.did_handshake === true')
    page.get_by_label('User').fill(name)
    page.get_by_label('Password').fill(password)
    page.get_by_role('button', name='Log in').click()
    return page


def save_screenshot(page: Page, name: str) -> None:
    """The whole page into screenshots/<name>.png. It must hold more than a blank page of its size does: a plain
    dark page of the same width and height, shot in the same browser, compresses to a fraction of any page with
    text (a fixed floor did not hold: the dark login page at 390 px is 10.2 KB, a blank one 2.7 KB, a blank one at
    1440 px 5.9 KB)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    target = SCREENSHOTS / f'{name}.png'
    image = page.screenshot(path=str(target), full_page=True)
    blank = _blank_png_size(page, *_png_size(image))
    assert len(image) > 1.5 * blank, f'{name}: {len(image):,} bytes, a blank page of its size {blank:,}'


def _png_size(image: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    return int.from_bytes(image[16:20], 'big'), int.from_bytes(image[20:24], 'big')


_blanks: dict[tuple[int, int], int] = {}


def _blank_png_size(page: Page, width: int, height: int) -> int:
    if (width, height) not in _blanks:
        blank = page.context.new_page()
        try:
            blank.set_viewport_size({'width': width, 'height': height})
            blank.set_content('<html><body style="margin:0;background:#121212"></body></html>')
            _blanks[width, height] = len(blank.screenshot())
        finally:
            blank.close()
    return _blanks[width, height]
