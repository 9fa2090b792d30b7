"""Money on the page adds up as displayed: the strip, the cards, the sessions, the reconciliation and the reports.

The amounts are chosen so that rounding each one alone would not add up (1.946 + 1.246 + 0.332 = 3.524 would show
as $1.95 + $1.25 + $0.33 beside a $3.52 total); every figure shown with its parts must equal their displayed sum,
with one number of places.
"""
from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal

from nicegui import ui
from nicegui.elements.mixins.value_element import ValueElement
from nicegui.testing import User

from app import runtime

DOLLARS = re.compile(r'-?\$[\d,]+\.\d+')


def record(**fields: object) -> None:
    runtime.current().ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 100,
                                     'output_tokens': 10, **fields})


def amounts(text: str) -> list[Decimal]:
    return [Decimal(a.replace('$', '').replace(',', '')) for a in DOLLARS.findall(text)]


def places(*texts: str) -> set[int]:
    return {len(a.partition('.')[2]) for text in texts for a in DOLLARS.findall(text)}


def seed() -> None:
    record(agent_id='planner', session_id='s-sum', channel='litellm', cost_usd='1.946')
    record(agent_id='coder', session_id='s-sum', provider='anthropic', model='claude-sonnet-4-5',
           cost_usd='1.246')
    record(agent_id='critic', session_id='s-sum', cost_usd='0.332')
    record(agent_id='critic', session_id='s-small', cost_usd='0.004449')


def label_text(user: User, marker: str) -> str:
    return user.find(kind=ui.label, marker=marker).elements.pop().text


async def test_strip_and_cards_add_up(user: User) -> None:
    seed()
    await user.open('/')
    strip = label_text(user, 'channel-strip')
    litellm, direct, total = amounts(strip)
    assert litellm + direct == total == Decimal('3.53'), strip  # 1.946 + 1.246 + 0.332 + 0.004449
    assert places(strip) == {2}
    for card in user.find(kind=ui.label, marker='agent-session').elements:
        assert places(card.text) in ({2}, {4}), card.text


async def test_session_breakdown_adds_up_to_the_session(user: User) -> None:
    seed()
    await user.open('/sessions')
    table = user.find(kind=ui.table, marker='sessions-table').elements.pop()
    assert places(*(r['cost'] for r in table.rows)) == {2}  # one column, one rule: "$3.53" and "$0.00"
    row = next(r for r in table.rows if r['id'] == 's-sum')
    user.find(marker='sessions-table').trigger('open', row['id'])
    await user.should_see('Session s-sum')
    breakdown = user.find(kind=ui.table, marker='session-breakdown').elements.pop()
    parts = [amounts(r['cost'])[0] for r in breakdown.rows]
    (total,) = amounts(label_text(user, 'session-total'))
    assert sum(parts) == total == amounts(row['cost'])[0]
    assert total == Decimal('3.52') != Decimal('1.95') + Decimal('1.25') + Decimal('0.33')  # each rounded alone


async def test_summary_report_groups_and_shares_add_up(user: User) -> None:
    seed()
    await user.open('/reports')
    await user.should_see('Spend summary')
    rows = user.find(kind=ui.table, marker='report-table').elements.pop().rows
    assert places(*(r['cost'] for r in rows)) == {2}
    by_group: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_group[r['group']].append(r)
    (total,) = amounts(by_group.pop('total')[0]['cost'])
    for group, members in by_group.items():
        assert sum(amounts(r['cost'])[0] for r in members) == total, group
        assert sum(Decimal(r['share_percent'].removesuffix('%')) for r in members) == 100, group
    totals = dict(item.split(': ') for item in label_text(user, 'report-totals').split(' · '))
    assert amounts(totals['total']) == [total]
    assert amounts(totals['litellm'])[0] + amounts(totals['direct'])[0] == total
    assert amounts(totals['recorded'])[0] + amounts(totals['unattributed'])[0] == total


async def test_trend_rows_and_columns_add_up(user: User) -> None:
    seed()
    await user.open('/reports')
    user.find(kind=ValueElement, marker='report-kind').elements.pop().value = 'trend'
    await user.should_see('Daily spend')
    rows = user.find(kind=ui.table, marker='report-table').elements.pop().rows
    for r in rows:
        assert amounts(r['litellm'])[0] + amounts(r['direct'])[0] == amounts(r['total'])[0], r
    totals = dict(item.split(': ') for item in label_text(user, 'report-totals').split(' · '))
    for column in ('recorded', 'litellm', 'direct', 'total'):
        assert sum(amounts(r[column])[0] for r in rows) == amounts(totals[column])[0], column
    assert places(*(r['total'] for r in rows), *totals.values()) == {2}


async def test_reconciliation_rows_add_up(user: User) -> None:
    from datetime import UTC, datetime

    from services.sources.base import PullResult, SnapshotRow
    from services.sources.snapshots import store_snapshots

    record(cost_usd='1.946', channel='litellm')
    today = datetime.now(UTC).date()
    with runtime.current().engine.begin() as conn:
        store_snapshots(conn, 'openai_direct', PullResult([SnapshotRow('openai_direct', today, 'openai', '',
                                                                        3_192_000)], {today}))
    await user.open('/')
    user.find(kind=ui.expansion, marker='reconciliation').elements.pop().open()
    table = user.find(kind=ui.table, marker='reconciliation-table').elements.pop()
    for r in table.rows:
        assert amounts(r['litellm'])[0] + amounts(r['direct'])[0] == amounts(r['total'])[0], r
    strip = label_text(user, 'channel-strip')
    assert sum(amounts(strip)[:2]) == amounts(strip)[2] == Decimal('3.19'), strip
