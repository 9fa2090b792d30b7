"""The chart tooltips format dollars in the browser: the same rule as services/core/display.py, run in chromium."""
from __future__ import annotations

from services.core.display import FORMAT_USD_JS, format_usd
from tests.support.browser import Browser

AMOUNTS = (0, 4_400, 7_250, 300_000, 999_949, 1_000_000, 3_192_000, 1_250_000_000, -500_000)


def test_tooltips_show_dollars_as_the_page_does(browser: Browser) -> None:
    page = browser.new_page()
    shown = page.evaluate(f'(values) => values.map({FORMAT_USD_JS})', [m / 1_000_000 for m in AMOUNTS])
    page.close()
    assert shown == [format_usd(m) for m in AMOUNTS]
