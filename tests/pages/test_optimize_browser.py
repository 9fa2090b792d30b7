"""The Optimise page in a real browser on the demo data (the README's screenshot): a server with the demo swarm's
backfilled week, the page at 1440 px in light and dark, the table filled and the cost-only note shown.

Screenshots land in `screenshots/optimize-demo-1440-<theme>.png` (git-ignored, like every page's)."""
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
