"""The chargeback report on constructed data with known answers (both databases): by project, by tag (a call with two
tags split between them, to the micro-USD) and by an allocation's shares; the billed spend no event explains is its
own line, and the lines add up exactly to the bill. Then its CSV and the API."""
from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import httpx
import pytest

from services.budget import allocations
from services.insights import report_formats
from services.insights.chargeback import NO_VALUE, OUTSIDE, TOTAL, UNATTRIBUTED
from services.insights.reports import Report
from services.usage.ledger import Ledger
from tests.services.insights.test_reports import bill, build, spend
from tests.support.api import assert_client_error, uid

BILL = 2_300_000  # OpenAI billed $1.80 (events: $1.200003), Anthropic's $0.50 from its events
UNEXPLAINED = 599_997


@pytest.fixture
def day_of_spend(ledger: Ledger) -> Ledger:
    spend(ledger, '1.00', channel='litellm', project='a', tags=['x', 'y'])
    spend(ledger, '0.50', provider='anthropic', project='b', tags=['y'])
    spend(ledger, '0.000003', project='a', tags=['z', 'x'])  # 3 micro-USD over two tags: x 2, z 1
    spend(ledger, '0.20', channel='litellm')
    bill(ledger, date(2026, 3, 18), 1_800_000)
    return ledger


def lines(report: Report) -> dict[str, int]:
    return {r['line']: r['cost'] for r in report.rows if r['line'] != TOTAL}


def assert_adds_up(report: Report) -> None:
    body = [r for r in report.rows if r['line'] != TOTAL]
    [total] = [r for r in report.rows if r['line'] == TOTAL]
    assert sum(r['cost'] for r in body) == total['cost'] == report.totals['bill'] == BILL
    assert sum(r['share_percent'] for r in body) == Decimal('100.00')


def test_by_project(day_of_spend: Ledger) -> None:
    report = build(day_of_spend, 'chargeback', period='day')
    assert lines(report) == {'project=a': 1_000_003, 'project=b': 500_000, NO_VALUE: 200_000,
                             UNATTRIBUTED: UNEXPLAINED}
    assert report.parameters['group_by'] == 'project' and report.totals['unattributed'] == UNEXPLAINED
    assert_adds_up(report)


def test_by_tag_splits_a_call_between_its_tags(day_of_spend: Ledger) -> None:
    report = build(day_of_spend, 'chargeback', period='day', group_by='tag')
    assert lines(report) == {'tag=y': 1_000_000, 'tag=x': 500_002, 'tag=z': 1, NO_VALUE: 200_000,
                             UNATTRIBUTED: UNEXPLAINED}
    assert_adds_up(report)


def test_by_the_shares_of_an_allocation(day_of_spend: Ledger) -> None:
    with day_of_spend.engine.begin() as conn:
        created = allocations.create_allocation(conn, allocations.validate({
            'name': 'split', 'period': 'day', 'limit_usd': '2',
            'shares': [{'scope': 'project', 'scope_value': 'a', 'percent': '60'},
                       {'scope': 'tag', 'scope_value': 'y', 'amount_usd': '0.3'}]}))
    report = build(day_of_spend, 'chargeback', period='day', group_by=f'allocation:{created.id}')
    # the call in project a tagged y falls under both shares: half each
    assert lines(report) == {'project=a': 500_003, 'tag=y': 1_000_000, OUTSIDE: 200_000, UNATTRIBUTED: UNEXPLAINED}
    limits = {r['line']: r['limit'] for r in report.rows}
    assert (limits['project=a'], limits['tag=y'], limits[TOTAL]) == (1_200_000, 300_000, 2_000_000)
    assert report.title.startswith('Chargeback by allocation split')
    assert_adds_up(report)
    parsed = list(csv.DictReader(io.StringIO(report_formats.render(report, 'csv'))))
    assert [(r['line'], r['cost_usd']) for r in parsed][-2:] == [(UNATTRIBUTED, '0.599997'), (TOTAL, '2.300000')]
    with pytest.raises(allocations.AllocationNotFound):
        build(day_of_spend, 'chargeback', period='day', group_by=f'allocation:{created.id + 1}')


def test_the_api_serves_it_and_refuses_bad_groupings(api: httpx.Client) -> None:
    project = uid('project')
    response = api.post('/usage', json={'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': '0.25',
                                        'project': project})
    assert response.status_code == 201, response.text
    report = api.get('/reports/chargeback', params={'period': 'day'})
    assert report.status_code == 200, report.text
    rows = {r['line']: r for r in report.json()['rows']}
    assert rows[f'project={project}']['cost_micros'] == 250_000
    total = rows.pop(TOTAL)
    bill_micros = report.json()['totals']['bill_micros']
    assert sum(r['cost_micros'] for r in rows.values()) == total['cost_micros'] == bill_micros
    markdown = api.get('/reports/chargeback', params={'period': 'day', 'group_by': 'tag', 'format': 'md'})
    assert markdown.status_code == 200 and '| Total \\(the bill\\) | total |' in markdown.text, markdown.text
    assert_client_error(api.get('/reports/chargeback', params={'group_by': 'team'}), 422, mentions='allocation:<id>')
    assert_client_error(api.get('/reports/chargeback', params={'group_by': 'allocation:x'}), 422, mentions='group_by')
    assert_client_error(api.get('/reports/chargeback', params={'group_by': 'allocation:987654'}), 404,
                        mentions='987654')
