"""Reconciliation on constructed days with known answers: LiteLLM only, billed only, both, LiteLLM above billed."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from services.core.context import BudgetContext
from services.sources.base import PullResult, SnapshotRow
from services.sources.snapshots import store_snapshots
from services.spend import budget
from services.spend.reconciliation import ReconciledDay, channel_totals, reconcile_last_days
from services.usage.ledger import Ledger

UTC_ZONE = ZoneInfo('UTC')
DAY = date(2026, 3, 10)
NOON = datetime(2026, 3, 10, 12, tzinfo=UTC)
TOLERANCE = Decimal('0.05')


def spend(ledger: Ledger, usd: str, provider: str = 'openai', channel: str = 'litellm', **fields: object) -> None:
    ledger.record({'model': 'gpt-4o', 'provider': provider, 'channel': channel, 'cost_usd': usd, 'ts': NOON,
                   **fields})


def snapshot(ledger: Ledger, source: str, usd_micros: int, provider: str = 'openai', day: date = DAY) -> None:
    with ledger.engine.begin() as conn:
        store_snapshots(conn, source, PullResult([SnapshotRow(source, day, provider, '', usd_micros)], {day}))


def cells(ledger: Ledger) -> dict[str, ReconciledDay]:
    with ledger.engine.connect() as conn:
        return {c.provider: c.as_dict(TOLERANCE) for c in reconcile_last_days(conn, 1, UTC_ZONE, NOON)}


def test_litellm_events_only(ledger: Ledger) -> None:
    spend(ledger, '1.00')
    openai = cells(ledger)['openai']
    assert (openai['litellm_micros'], openai['billed_micros'], openai['direct_micros'], openai['total_micros']) == \
        (1_000_000, None, 0, 1_000_000)


def test_pulled_litellm_spend_and_callback_events_are_the_same_money(ledger: Ledger) -> None:
    spend(ledger, '1.00')
    snapshot(ledger, 'litellm', 1_500_000)  # the proxy saw calls the callback missed: take the larger, not the sum
    assert cells(ledger)['openai']['litellm_micros'] == 1_500_000
    snapshot(ledger, 'litellm', 400_000)  # a re-pull replaces the day; events are now the larger figure
    assert cells(ledger)['openai']['litellm_micros'] == 1_000_000


def test_billed_only_is_all_direct(ledger: Ledger) -> None:
    snapshot(ledger, 'anthropic_direct', 2_000_000, provider='anthropic')
    anthropic = cells(ledger)['anthropic']
    assert (anthropic['litellm_micros'], anthropic['billed_micros'], anthropic['direct_micros'],
            anthropic['total_micros'], anthropic['gap_micros']) == (0, 2_000_000, 2_000_000, 2_000_000, 0)


def test_billed_and_litellm_direct_is_the_difference(ledger: Ledger) -> None:
    spend(ledger, '1.00')
    snapshot(ledger, 'openai_direct', 3_000_000)
    openai = cells(ledger)['openai']
    assert (openai['litellm_micros'], openai['direct_micros'], openai['total_micros']) == \
        (1_000_000, 2_000_000, 3_000_000)


def test_direct_events_above_a_late_bill_count_as_they_are(ledger: Ledger) -> None:
    spend(ledger, '1.00')
    spend(ledger, '2.50', channel='direct')
    snapshot(ledger, 'openai_direct', 3_000_000)  # the bill lags: it shows $2 direct, the events $2.50
    openai = cells(ledger)['openai']
    assert (openai['direct_micros'], openai['total_micros']) == (2_500_000, 3_500_000)


def test_litellm_above_the_bill_is_a_gap_and_direct_is_floored_at_zero(ledger: Ledger) -> None:
    spend(ledger, '2.00')
    snapshot(ledger, 'openai_direct', 1_000_000)
    openai = cells(ledger)['openai']
    assert (openai['direct_micros'], openai['total_micros'], openai['gap_micros'], openai['gap_alert']) == \
        (0, 2_000_000, 1_000_000, True)


def test_a_gap_within_the_tolerance_is_not_alerted(ledger: Ledger) -> None:
    spend(ledger, '1.04')
    snapshot(ledger, 'openai_direct', 1_000_000)
    openai = cells(ledger)['openai']
    assert (openai['gap_micros'], openai['gap_alert']) == (40_000, False)


def test_providers_are_reconciled_separately_and_summed(ledger: Ledger) -> None:
    spend(ledger, '1.00')
    snapshot(ledger, 'openai_direct', 3_000_000)
    spend(ledger, '0.50', provider='anthropic', channel='direct')
    snapshot(ledger, 'litellm', 700_000, provider='openrouter')
    with ledger.engine.connect() as conn:
        totals = channel_totals(reconcile_last_days(conn, 1, UTC_ZONE, NOON))
        summary = budget.period_summary(conn, BudgetContext(UTC_ZONE), 'day', NOON)
    assert totals['litellm'] == 1_000_000 + 700_000
    assert totals['direct'] == 2_000_000 + 500_000
    assert totals['total'] == 4_200_000
    assert summary['spent_micros'] == 4_200_000 and summary['recorded_micros'] == 1_500_000
    assert (summary['by_channel']['litellm']['spent_micros'], summary['by_channel']['direct']['spent_micros']) == \
        (1_700_000, 2_500_000)


def test_other_days_do_not_leak_in(ledger: Ledger) -> None:
    snapshot(ledger, 'openai_direct', 9_000_000, day=DAY - timedelta(days=1))
    spend(ledger, '1.00', ts=NOON - timedelta(days=1))
    assert cells(ledger) == {}
