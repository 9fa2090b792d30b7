"""The reports page through NiceGUI's simulated user: table, trend chart, controls and the exports."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from nicegui import ui
from nicegui.elements.mixins.value_element import ValueElement
from nicegui.testing import User

from app import runtime
from tests.support.pages import PATIENT


def record(**fields: object) -> None:
    runtime.current().ledger.record({'model': 'gpt-4o', 'provider': 'openai', **fields})


def table_rows(user: User) -> list[dict]:
    return user.find(kind=ui.table, marker='report-table').elements.pop().rows


def choose(user: User, marker: str, value: object) -> None:
    user.find(kind=ValueElement, marker=marker).elements.pop().value = value


async def test_summary_by_default_with_every_group_and_the_total(user: User) -> None:
    record(agent_id='planner', cost_usd='0.30', channel='litellm')
    record(agent_id='coder', provider='anthropic', model='claude-sonnet-4-5', cost_usd='0.10')
    await user.open('/reports')
    await user.should_see('Spend summary')
    rows = {(r['group'], r['name']): r for r in table_rows(user)}
    assert rows[('agent', 'planner')]['cost'] == '$0.3000'
    assert rows[('provider', 'anthropic')]['share_percent'] == '25.00%'
    assert rows[('channel', 'litellm')]['cost'] == '$0.3000'
    assert rows[('total', 'total')]['cost'] == '$0.4000'
    assert rows[('total', 'total')]['requests'] == '2'
    await user.should_not_see(marker='report-chart')


async def test_trend_shows_a_chart_and_a_row_per_day(user: User) -> None:
    record(cost_usd='0.20')
    await user.open('/reports')
    choose(user, 'report-kind', 'trend')
    await user.should_see('Daily spend')
    chart = user.find(kind=ui.echart, marker='report-chart').elements.pop()
    assert [s['name'] for s in chart.options['series']] == ['Via LiteLLM', 'Direct', 'Recorded']
    rows = table_rows(user)
    assert len(rows) >= 28  # the days of this month, zero-filled
    assert sum(s for s in chart.options['series'][1]['data']) == pytest.approx(0.2)
    assert [r['total'] for r in rows if r['total'] != '$0.0000'] == ['$0.2000']
    choose(user, 'report-group-by', 'week')
    await user.should_see('Weekly spend')
    assert 4 <= len(table_rows(user)) <= 6


async def test_token_efficiency_per_agent_then_per_model(user: User) -> None:
    record(agent_id='coder', input_tokens=2000, cache_read_tokens=500, output_tokens=500, cost_usd='0.02')
    record(agent_id='reader', model='gpt-4o-mini', input_tokens=4000, cost_usd='0.01')
    await user.open('/reports')
    choose(user, 'report-kind', 'efficiency')
    await user.should_see('Token efficiency by agent')
    rows = {r['name']: r for r in table_rows(user)}
    assert (rows['coder']['output_per_input'], rows['coder']['cache_read_percent']) == ('0.25', '25.00%')
    assert rows['coder']['cost_per_1k_output'] == '$0.0400'  # $0.02 for 500 output tokens
    assert (rows['reader']['output_per_input'], rows['reader']['cost_per_1k_output']) == ('0.0', '')
    await user.should_see('cost: $0.0300')
    choose(user, 'report-group-by', 'model')
    await user.should_see('Token efficiency by model')
    assert [r['name'] for r in table_rows(user)] == ['gpt-4o', 'gpt-4o-mini']


async def test_custom_dates_and_a_bad_range(user: User) -> None:
    await user.open('/reports')
    choose(user, 'report-period', 'custom')
    await user.should_see('Pick both dates')
    choose(user, 'report-from', '2026-03-10')
    choose(user, 'report-to', '2026-03-01')
    await user.should_see('to must be after from')
    choose(user, 'report-to', '2026-03-12')
    await user.should_see('Spend summary, 2026-03-10 to 2026-03-12')
    choose(user, 'report-kind', 'comparison')
    await user.should_see('Spend 2026-03-10 to 2026-03-12 against 2026-03-07 to 2026-03-09')


async def test_projection_hides_the_period_controls(user: User) -> None:
    await user.open('/reports')
    choose(user, 'report-kind', 'projection')
    await user.should_see('Projection at')
    assert [r['period'] for r in table_rows(user)] == ['day', 'week', 'month']
    await user.should_not_see(marker='report-period')
    await user.should_not_see(marker='report-group-by')


@pytest.mark.parametrize('fmt', ['csv', 'md', 'json'])
async def test_exports_download_the_api_file(user: User, fmt: str) -> None:
    record(agent_id='=HYPERLINK("http://evil")', cost_usd='0.25')
    await user.open('/reports')
    await user.should_see('Spend summary')
    user.find(marker=f'export-{fmt}').click()
    response = await user.download.next()
    assert response.status_code == 200
    if fmt == 'csv':
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert {r['name'] for r in rows if r['group'] == 'agent'} == {'\'=HYPERLINK("http://evil")'}
        assert response.headers['content-disposition'].startswith('attachment; filename="spendgauge-summary-')
    elif fmt == 'md':
        assert response.text.startswith('# Spend summary')
    else:
        assert json.loads(response.text)['totals']['total_micros'] == 250_000


async def test_export_in_a_desktop_window_saves_the_file(user: User, desktop_downloads: Path) -> None:
    record(agent_id='planner', cost_usd='0.10')
    await user.open('/reports')
    user.find(marker='export-md').click()
    await user.should_see('Saved ', retries=PATIENT)
    saved = list(desktop_downloads.glob('spendgauge-summary-*.md'))
    assert len(saved) == 1 and '| agent | planner |' in saved[0].read_text()


async def test_the_navigation_links_to_reports(user: User) -> None:
    await user.open('/')
    user.find('Reports').click()
    await user.should_see('Spend summary')
    assert user.find(kind=ui.table, marker='report-table').elements


# --- the daily digest card ----------------------------------------------------------------------------------------

def _digest_rows() -> list[Any]:
    from services.alerting.notify import list_deliveries

    return runtime.current().read(list_deliveries, 'digest')


def _yesterday_noon() -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(days=1)).replace(hour=12, minute=0).isoformat()


async def _open_digest(user: User) -> None:
    await user.open('/reports')
    user.find(kind=ui.expansion, marker='digest-card').elements.pop().value = True
    await user.should_see('SpendGauge daily digest for', retries=PATIENT)


async def test_the_digest_card_previews_a_day_and_sends_it(user: User) -> None:
    record(agent_id='<b>planner</b>', cost_usd='1.25', ts=_yesterday_noon())
    await _open_digest(user)
    preview = user.find(kind=ui.label, marker='digest-preview').elements.pop()
    row = next(line for line in preview.text.splitlines() if 'planner' in line)
    assert row.split() == ['<b>planner</b>', '$1.25', '1', 'request']  # plain text in a label, never parsed as HTML
    await user.should_see('Spent: $1.25')
    choose(user, 'digest-day', '2099-01-01')
    await user.should_see('is in the future', retries=PATIENT)
    choose(user, 'digest-day', '2001-01-01')
    await user.should_see('SpendGauge daily digest for 2001-01-01', retries=PATIENT)
    user.find(marker='digest-send').click()
    await user.should_see('Digest of 2001-01-01 sent to log', retries=PATIENT)
    assert [(r['ref_id'], r['channel']) for r in _digest_rows()] == [(20010101, 'log')]


async def test_a_read_only_user_cannot_send_the_digest(user: User) -> None:
    from nicegui.elements.mixins.disableable_element import DisableableElement

    from services.core.access import SYSTEM, Role
    from tests.pages.test_login import PASSWORD, log_in

    runtime.current().commands.accounts.create_user(SYSTEM, 'reed', PASSWORD, Role.READ)
    await log_in(user, 'reed')
    await _open_digest(user)
    button = user.find(marker='digest-send').elements.pop()
    assert isinstance(button, DisableableElement) and not button.enabled
    button.enable()  # tampering: the command refuses it all the same
    user.find(marker='digest-send').click()
    await user.should_see('sending the daily digest needs the admin role', retries=PATIENT)
    assert _digest_rows() == []
