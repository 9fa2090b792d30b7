"""The usage explorer and the Optimise page in a real browser on the demo data (the README's screenshots): a server
with the demo swarm's backfilled week, each page at 1440 px in light and dark, filled.

Screenshots land in `screenshots/<page>-demo-1440-<theme>.png` (git-ignored, like every page's); the README shows
copies of the light ones kept in `assets/readme/` (copy them there by hand when a page changes)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pages.test_layout import theme_of, toggle_theme
from tests.support.browser import Browser, Tab, save_screenshot
from tests.support.servers import Server, start_server
from tests.support.wait import eventually


@pytest.fixture(scope='module')
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp('optimize-demo'), SPENDGAUGE_DEMO='on',
                       SPENDGAUGE_DAILY_LIMIT_USD='none',
                       SPENDGAUGE_OPTIMIZE_SUBSTITUTES='openai:gpt-4o-mini,anthropic:claude-3-5-haiku-latest')
    with srv.client() as client:
        eventually(lambda: len(client.get('/optimize', params={'period': 'week'}).json()['agents']) >= 3, timeout=60)
    yield srv
    srv.stop()


@pytest.mark.parametrize('theme', ['light', 'dark'])
def test_the_optimise_page_on_the_demo_data(browser: Browser, demo_server: Server, theme: str) -> None:
    tab = Tab(browser, 1440, 900)
    try:
        page = tab.open(demo_server.url + '/optimize')
        if theme_of(page) != theme:
            toggle_theme(page)
        assert theme_of(page) == theme
        page.get_by_text('Cost only', exact=False).first.wait_for()
        page.locator('.q-table tbody tr').first.wait_for()
        first_agent = page.locator('.q-table tbody tr').first.inner_text()
        assert 'all models' in first_agent and '$' in first_agent
        assert page.locator('.q-table tbody tr').count() >= 6
        assert page.get_by_text('→', exact=False).count() >= 3  # candidates
        save_screenshot(page, f'optimize-demo-1440-{theme}')
        assert tab.problems == []
    finally:
        tab.close()


@pytest.mark.parametrize('theme', ['light', 'dark'])
def test_the_usage_explorer_on_the_demo_data(browser: Browser, demo_server: Server, theme: str) -> None:
    tab = Tab(browser, 1440, 900)
    try:
        page = tab.open(demo_server.url + '/usage')
        if theme_of(page) != theme:
            toggle_theme(page)
        assert theme_of(page) == theme
        page.get_by_text('Page 1 · 50 events, newest first').wait_for()
        assert page.locator('.q-table tbody tr').count() == 50
        page.get_by_text('Newest first', exact=True).click()  # the sort: dearest first
        page.get_by_role('option', name='Dearest first').click()
        page.get_by_text('Apply').click()
        page.get_by_text('Page 1 · 50 events, dearest first').wait_for()
        costs = [float(cell.removeprefix('$').replace(',', '')) for cell in
                 page.locator('.q-table tbody tr td:nth-child(5)').all_inner_texts()]
        assert costs == sorted(costs, reverse=True) and costs[0] > 0, costs[:5]
        page.evaluate('window.scrollTo(0, 0)')  # the fixed header at the top of the shot
        save_screenshot(page, f'usage-demo-1440-{theme}')
        assert tab.problems == []
    finally:
        tab.close()
