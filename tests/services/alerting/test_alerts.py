"""Alerts: deduplicated while open, a cooldown after resolution, acknowledge and resolve; and the API."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine

from services.alerting import alerts

T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)


def test_an_open_alert_is_counted_not_repeated(engine: Engine) -> None:
    with engine.begin() as conn:
        first, new = alerts.raise_alert(conn, 'sync_failure', 'warning', 'openai failed 3 times', 'sync:openai',
                                        now=T0)
        again, new_again = alerts.raise_alert(conn, 'sync_failure', 'warning', 'openai failed 4 times',
                                              'sync:openai', now=T0 + timedelta(minutes=5))
        listed = alerts.list_alerts(conn)
    assert first is not None and again is not None
    assert new and not new_again and again['id'] == first['id']
    assert (again['count'], again['message']) == (2, 'openai failed 4 times')
    assert [a['id'] for a in listed] == [first['id']]


def test_a_resolved_alert_stays_quiet_for_the_cooldown(engine: Engine) -> None:
    with engine.begin() as conn:
        first, _ = alerts.raise_alert(conn, 'anomaly', 'critical', 'spike', 'anomaly:a', now=T0)
        assert alerts.resolve_key(conn, 'anomaly:a', now=T0 + timedelta(minutes=1)) == 1
        quiet, new = alerts.raise_alert(conn, 'anomaly', 'critical', 'spike', 'anomaly:a',
                                        now=T0 + timedelta(minutes=30))
        later, later_new = alerts.raise_alert(conn, 'anomaly', 'critical', 'spike', 'anomaly:a',
                                              now=T0 + timedelta(hours=2))
    assert quiet is None and not new
    assert first is not None and later is not None
    assert later_new and later['id'] != first['id']


def test_acknowledge_and_resolve(engine: Engine) -> None:
    with engine.begin() as conn:
        alert, _ = alerts.raise_alert(conn, 'sync_failure', 'warning', 'x', 'k', now=T0)
        assert alert is not None
        acked = alerts.acknowledge(conn, alert['id'], 'ops@example.com', now=T0 + timedelta(minutes=1))
        assert acked['acknowledged_by'] == 'ops@example.com' and acked['open']
        assert alerts.list_alerts(conn, 'unacknowledged') == []
        resolved = alerts.resolve(conn, alert['id'], now=T0 + timedelta(minutes=2))
        assert not resolved['open'] and alerts.list_alerts(conn) == []
        assert [a['id'] for a in alerts.list_alerts(conn, 'all')] == [alert['id']]
        with pytest.raises(alerts.AlertNotFound):
            alerts.acknowledge(conn, 999_999, 'x')


def test_alerts_api(api: httpx.Client) -> None:
    assert api.get('/alerts').status_code == 200
    assert api.post('/alerts/999999/ack', json={'by': 'me'}).status_code == 404
    assert api.post('/alerts/999999/resolve').status_code == 404
    assert api.get('/alerts', params={'status': 'nonsense'}).status_code == 422
    assert api.post('/alerts/1/ack', json={'by': ''}).status_code == 422


def test_sync_api_without_configured_sources(api: httpx.Client) -> None:
    status = api.get('/sync/status').json()['sources']
    assert [s['source'] for s in status] == ['litellm', 'openai_direct', 'anthropic_direct', 'openrouter_direct']
    assert not any(s['configured'] for s in status)
    assert api.post('/sync/openai_direct').status_code == 409
    assert api.post('/sync/nonsense').status_code == 404
    assert api.post('/sync/all').json() == {'runs': []}


def test_reconciliation_api_shape(api: httpx.Client) -> None:
    body = api.get('/budget/reconciliation', params={'days': 7}).json()
    assert body['days'] == 7 and body['tolerance'] == '0.05'
    assert body['total_micros'] == body['litellm_micros'] + body['direct_micros']
    assert api.get('/budget/reconciliation', params={'days': 0}).status_code == 422
