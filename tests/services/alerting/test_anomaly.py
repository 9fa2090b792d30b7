"""The broken-loop detector: thresholds on constructed hourly series, and alerts from real ledger data."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from services.alerting import alerts
from services.alerting.anomaly import hourly_history, judge, run_anomaly_check
from services.live.hub import EventHub
from services.live.topics import AlertRaised, LiveEvent
from services.usage.ledger import Ledger

USD = 1_000_000


def test_a_steady_agent_must_double_its_usual_spend() -> None:
    history = [USD] * 24  # $1 every hour: median $1, MAD 0, so the floor decides: $1 + max(0, $1, $0.50)
    assert judge(history, 2 * USD).anomalous is False
    verdict = judge(history, 2 * USD + 1)
    assert verdict.anomalous is True
    assert (verdict.median_micros, verdict.mad_micros, verdict.threshold_micros) == (USD, 0, 2 * USD)


def test_the_threshold_is_median_plus_six_mads() -> None:
    history = [n * 100_000 for n in range(1, 11)]  # $0.10..$1.00: median $0.55, MAD $0.25
    verdict = judge(history, 2_050_000)
    assert (verdict.median_micros, verdict.mad_micros, verdict.threshold_micros) == (550_000, 250_000, 2_050_000)
    assert verdict.anomalous is False
    assert judge(history, 2_050_001).anomalous is True


def test_cheap_agents_need_a_jump_of_at_least_fifty_cents() -> None:
    history = [10_000] * 30  # $0.01 an hour
    assert judge(history, 510_000).anomalous is False
    assert judge(history, 510_001).anomalous is True


def test_idle_hours_do_not_count_and_a_short_history_gives_no_verdict() -> None:
    assert judge([0] * 100 + [USD] * 5, 50 * USD).threshold_micros is None
    assert judge([0] * 100 + [USD] * 6, 50 * USD).anomalous is True
    assert judge([0] * 100 + [USD] * 6, USD).anomalous is False


def record(ledger: Ledger, agent: str, ts: datetime, usd: str) -> None:
    ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'agent_id': agent, 'ts': ts.isoformat(),
                   'cost_usd': usd})


def test_hourly_history_reads_the_rollups(ledger: Ledger, engine: Engine) -> None:
    end = datetime(2026, 3, 10, 12, tzinfo=UTC)
    record(ledger, 'a', end - timedelta(minutes=30), '0.25')
    record(ledger, 'a', end - timedelta(minutes=20), '0.25')
    record(ledger, 'a', end - timedelta(hours=5, minutes=1), '1.00')
    record(ledger, 'b', end + timedelta(minutes=1), '9.00')  # after the end: not history
    with engine.connect() as conn:
        series = hourly_history(conn, end, days=1)
    assert set(series) == {'a'}
    assert len(series['a']) == 24
    assert series['a'][-1] == 500_000 and series['a'][-6] == USD and sum(series['a']) == 1_500_000


def test_a_runaway_agent_raises_one_anomaly_alert(ledger: Ledger, engine: Engine, hub: EventHub) -> None:
    events: list[LiveEvent] = []
    hub.subscribe(lambda e: events.append(e) if e.topic == 'alert_raised' else None)
    now = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
    for hours_ago in range(2, 26):  # a day of $0.20 hours for both agents
        for agent in ('looper', 'calm'):
            record(ledger, agent, now - timedelta(hours=hours_ago), '0.20')
    for minute in range(5, 55, 5):  # the last hour: looper spends $3.00, calm its usual $0.20
        record(ledger, 'looper', now - timedelta(minutes=minute), '0.30')
    record(ledger, 'calm', now - timedelta(minutes=30), '0.20')
    events.clear()

    new = run_anomaly_check(engine, hub, now)
    assert [a['data']['agent_id'] for a in new] == ['looper']
    alert = new[0]
    assert (alert['type'], alert['severity'], alert['dedupe_key']) == ('anomaly', 'critical', 'anomaly:looper')
    assert alert['data'] == {'agent_id': 'looper', 'last_hour_micros': 3 * USD, 'median_micros': 200_000,
                             'mad_micros': 0, 'threshold_micros': 700_000}
    assert 'looper spent $3.00 in the last hour' in alert['message']  # critical: over 3x the threshold
    assert [e.alert['id'] for e in events if isinstance(e, AlertRaised)] == [alert['id']]

    assert run_anomaly_check(engine, hub, now + timedelta(minutes=5)) == [], 'still open: counted, not new'
    assert len(events) == 1
    with engine.connect() as conn:
        assert alerts.get_alert(conn, alert['id'])['count'] == 2

    assert run_anomaly_check(engine, hub, now + timedelta(hours=2)) == []
    with engine.connect() as conn:
        assert alerts.get_alert(conn, alert['id'])['open'] is False, 'back to normal: resolved'
