"""The browser of the page tests: Debian's chromium, one per test module."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.browser import Browser, launch


@pytest.fixture(scope='module')
def browser() -> Iterator[Browser]:
    yield from launch()
