"""A test that cannot run here: skipped on a developer's machine, failed in CI (CI=true), which installs everything."""
from __future__ import annotations

import os
from typing import NoReturn

import pytest


def running_in_ci() -> bool:
    return os.environ.get('CI') == 'true'


def unavailable(reason: str, in_ci: str = '') -> NoReturn:
    """Skip, or in CI fail, with `reason` (and `in_ci` appended in CI)."""
    if running_in_ci():
        pytest.fail(f'{reason}{in_ci}')
    pytest.skip(reason)
