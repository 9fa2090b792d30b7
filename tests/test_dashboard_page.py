"""The dashboard page through NiceGUI's simulated user (no browser)."""
from __future__ import annotations

from nicegui import ui
from nicegui.testing import User

from app import runtime
from components.gauge import gauge_colour, gauge_options


async def test_empty_dashboard_says_no_spend_yet(user: User) -> None:
    await user.open('/')
    await user.should_see('No spend yet today')
    await user.should_see('Via LiteLLM: $0.00 | Direct: $0.00 | Total: $0.00')
    chart = user.find(kind=ui.echart).elements.pop()
    assert chart.options['series'][0]['data'][0]['name'] == '$0.00 / $5.00'


async def test_dashboard_shows_recorded_spend(user: User) -> None:
    ledger = runtime.current().ledger
    ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'channel': 'litellm', 'cost_usd': '1.25'})
    ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'channel': 'direct', 'cost_usd': '0.50'})
    await user.open('/')
    await user.should_see('Via LiteLLM: $1.25 | Direct: $0.50 | Total: $1.75')
    await user.should_see('resets in')
    chart = user.find(kind=ui.echart).elements.pop()
    assert chart.options['series'][0]['data'][0] == {'value': 35.0, 'name': '$1.75 / $5.00'}


def test_gauge_turns_amber_at_soft_and_red_at_critical() -> None:
    assert gauge_colour(50) == '#d4a72c'
    assert gauge_colour(80) == '#f59e0b'
    assert gauge_colour(96) == '#ef4444'
    over = gauge_options(7_000_000, 5_000_000)['series'][0]
    assert over['data'][0]['value'] == 100.0 and over['detail']['formatter'] == '140%'
    assert gauge_options(0, None)['series'][0]['data'][0]['name'] == '$0.00'
