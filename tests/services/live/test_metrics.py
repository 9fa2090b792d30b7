"""Each runtime counts into a registry of its own: a stopped runtime stops counting, the next one starts at zero, and
prometheus-client's global registry holds none of ours (tests/api/test_metrics.py scrapes real servers)."""
from __future__ import annotations

from collections.abc import Iterator

import prometheus_client
import pytest
from prometheus_client import generate_latest

from app import runtime
from services.live.hub import hub
from services.live.metrics import OTHER, BoundedLabels, Metrics
from services.live.topics import AlertRaised, SyncFinished


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_runtimes_do_not_share_counters() -> None:
    first = runtime.start()
    first.ledger.record({'model': 'gpt-4o', 'agent_id': 'a', 'cost_usd': '0.5', 'source': 'sdk'})
    assert value(first.metrics, 'spendgauge_usage_events_total', source='sdk', channel='direct') == 1
    assert value(first.metrics, 'spendgauge_agent_spend_micros_total', agent='a') == 500_000
    runtime.stop()

    second = runtime.start()
    assert second.metrics is not first.metrics
    assert value(second.metrics, 'spendgauge_usage_events_total', source='sdk', channel='direct') == 0
    second.ledger.record({'model': 'gpt-4o', 'agent_id': 'a', 'cost_usd': '0.25', 'source': 'sdk'})
    hub.publish(SyncFinished('litellm', 'error'))
    assert value(second.metrics, 'spendgauge_agent_spend_micros_total', agent='a') == 250_000
    assert value(second.metrics, 'spendgauge_sync_failures_total', source='litellm') == 1
    # the stopped runtime no longer listens to the process-wide hub
    assert value(first.metrics, 'spendgauge_agent_spend_micros_total', agent='a') == 500_000
    assert value(first.metrics, 'spendgauge_sync_runs_total', source='litellm') == 0
    runtime.stop()
    assert b'spendgauge_' not in generate_latest(prometheus_client.REGISTRY)


def test_alerts_and_syncs_from_the_hub() -> None:
    metrics = Metrics()
    metrics.follow(hub, ('openrouter_direct',))
    try:
        assert value(metrics, 'spendgauge_sync_runs_total', source='openrouter_direct') == 0
        assert b'spendgauge_sync_runs_total{source="openrouter_direct"} 0.0' in generate_latest(metrics.registry)
        hub.publish(SyncFinished('openrouter_direct', 'ok'))
        hub.publish(SyncFinished('openrouter_direct', 'error'))
        hub.publish(AlertRaised({'type': 'sync_failure', 'severity': 'warning'}))
        hub.publish(AlertRaised({'type': 'limit_exceeded', 'severity': 'critical'}))
        hub.publish(AlertRaised({'type': 'sync_failure', 'severity': 'warning'}))
    finally:
        metrics.close()
    hub.publish(SyncFinished('openrouter_direct', 'ok'))  # after close: not counted
    assert value(metrics, 'spendgauge_sync_runs_total', source='openrouter_direct') == 2
    assert value(metrics, 'spendgauge_sync_failures_total', source='openrouter_direct') == 1
    assert value(metrics, 'spendgauge_alerts_raised_total', type='sync_failure', severity='warning') == 2
    assert value(metrics, 'spendgauge_alerts_raised_total', type='limit_exceeded', severity='critical') == 1


def test_bounded_labels_keep_the_first_ones_seen() -> None:
    label = BoundedLabels(3)
    assert [label(v) for v in ('a', 'b', 'a', 'c', 'd', 'b', 'e', 'c')] == ['a', 'b', 'a', 'c', OTHER, 'b', OTHER,
                                                                             'c']


def test_a_failed_dashboard_load_is_counted_and_timed() -> None:
    metrics = Metrics()
    calls: Iterator[ValueError | str] = iter([ValueError('database gone'), 'data'])

    def load() -> str:
        result = next(calls)
        if isinstance(result, Exception):
            raise result
        return result

    timed = metrics.timed_load(load)
    with pytest.raises(ValueError, match='database gone'):
        timed()
    assert timed() == 'data'
    assert value(metrics, 'spendgauge_dashboard_reload_duration_seconds_count') == 2
    assert value(metrics, 'spendgauge_dashboard_reload_failures_total') == 1


def test_http_labels_are_bounded() -> None:
    metrics = Metrics()
    metrics.request_served('BREW', '/api/v1/check', 418, 0.002)
    metrics.request_served('GET', '/api/v1/agents', 200, 0.2)
    assert value(metrics, 'spendgauge_http_request_duration_seconds_count', method='other', route='/api/v1/check',
                 status='4xx') == 1
    assert value(metrics, 'spendgauge_http_request_duration_seconds_bucket', method='GET', route='/api/v1/agents',
                 status='2xx', le='0.1') == 0
    assert value(metrics, 'spendgauge_http_request_duration_seconds_bucket', method='GET', route='/api/v1/agents',
                 status='2xx', le='0.25') == 1
