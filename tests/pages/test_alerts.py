"""The alerts page, the header bell and the alert toasts, through NiceGUI's simulated user."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from nicegui import ui
from nicegui.testing import User
from sqlalchemy import update

from app import runtime
from app.feed import feed
from services.alerting import alerts
from services.alerting.notify import Notifier, list_deliveries
from services.core.tables import DELIVERIES
from services.live.topics import AlertRaised, AlertsChanged, DeliveryChanged
from tests.support.pages import PATIENT, settle


def raise_alert(key: str, message: str, severity: alerts.Severity = 'warning', type: str = 'anomaly',
                publish: bool = True) -> alerts.AlertOut:
    rt = runtime.current()
    with rt.engine.begin() as conn:
        alert, is_new = alerts.raise_alert(conn, type, severity, message, key)
    assert alert is not None
    if publish and is_new:
        rt.hub.publish(AlertRaised(alert))
    return alert


def stored(alert_id: int) -> alerts.AlertOut:
    with runtime.current().engine.connect() as conn:
        return alerts.get_alert(conn, alert_id)


def badge(user: User) -> ui.badge:
    return user.find(kind=ui.badge, marker='alerts-count').elements.pop()


async def test_the_page_lists_open_alerts_and_acknowledges_and_resolves(user: User) -> None:
    looped = raise_alert('anomaly:looper', 'looper spent $3.00 in the last hour', 'critical', publish=False)
    raise_alert('anomaly:looper', 'looper spent $3.10 in the last hour', 'critical', publish=False)
    sync = raise_alert('sync_failure:litellm', 'litellm: 3 syncs in a row failed', type='sync_failure',
                       publish=False)
    await user.open('/alerts')
    await user.should_see('looper spent $3.10 in the last hour')
    await user.should_see('2 times')
    await user.should_see('litellm: 3 syncs in a row failed')
    await user.should_see('sync_failure')
    await user.should_see('critical')

    user.find(marker='ack-by').clear().type('alice')
    user.find(marker=f'ack-{looped["id"]}').click()
    await settle(lambda: stored(looped['id'])['acknowledged_by'] == 'alice')
    await user.should_see('acknowledged by alice')
    await user.should_not_see(marker=f'ack-{looped["id"]}')

    user.find(marker=f'resolve-{sync["id"]}').click()
    await settle(lambda: not stored(sync['id'])['open'])
    await user.should_not_see('litellm: 3 syncs in a row failed', retries=PATIENT)

    user.find(marker=f'resolve-{looped["id"]}').click()
    await user.should_see('No open alerts', retries=PATIENT)
    user.find(kind=ui.toggle, marker='alerts-filter').elements.pop().value = 'all'
    await user.should_see('litellm: 3 syncs in a row failed', retries=PATIENT)
    await user.should_see('resolved')


async def test_the_default_acknowledger_is_the_dashboard(user: User) -> None:
    alert = raise_alert('t:1', 'something happened', publish=False)
    await user.open('/alerts')
    user.find(marker=f'ack-{alert["id"]}').click()
    await settle(lambda: stored(alert['id'])['acknowledged_by'] == 'dashboard')


async def test_the_bell_counts_unacknowledged_alerts_and_new_ones_toast(user: User) -> None:
    raise_alert('t:old', 'an older alert', publish=False)
    await user.open('/')
    await settle(lambda: badge(user).text == '1')
    assert badge(user).visible
    assert not user.notify.contains('an older alert'), 'alerts from before the page opened do not toast'

    await asyncio.to_thread(raise_alert, 'anomaly:coder', 'coder spent $9.00 in the last hour', 'critical')
    await settle(lambda: badge(user).text == '2')
    await settle(lambda: user.notify.contains('anomaly: coder spent $9.00 in the last hour'))

    rt = runtime.current()
    with rt.engine.begin() as conn:
        for alert in alerts.list_alerts(conn, 'unacknowledged'):
            alerts.acknowledge(conn, alert['id'], 'api')
    bell_badge = badge(user)
    rt.hub.publish(AlertsChanged())
    await settle(lambda: not bell_badge.visible)
    assert len([m for m in user.notify.messages if 'coder spent' in m]) == 1


async def test_the_alerts_page_updates_live_and_the_bell_is_on_every_page(user: User,
                                                                           create_user: Callable[[], User]) -> None:
    other = create_user()
    await user.open('/alerts')
    await other.open('/sessions')
    await user.should_see('No open alerts')
    listeners = feed().listeners
    await asyncio.to_thread(raise_alert, 'reconciliation_gap:openai:2026-03-10', 'openai billed less',
                            'warning', 'reconciliation_gap')
    await user.should_see('openai billed less', retries=PATIENT)
    await settle(lambda: badge(other).text == '1')
    with runtime.current().engine.connect() as conn:
        assert [r['channel'] for r in list_deliveries(conn)] == ['log'], 'one notifier: one delivery per channel'
    toasts = [m for m in [*user.notify.messages, *other.notify.messages] if 'openai billed less' in m]
    assert toasts == ['reconciliation_gap: openai billed less'] * 2, 'one toast on each open page'
    assert feed().listeners == listeners, 'the bells do not count as page listeners'
    user.find(marker='alerts-bell').click()
    await user.should_see('openai billed less')


async def test_alerts_is_in_the_navigation(user: User) -> None:
    await user.open('/')
    user.find('Alerts').click()
    await user.should_see('No open alerts')


async def test_the_eco_note_shows_whether_the_webhook_got_the_last_change(user: User) -> None:
    rt = runtime.current()
    now = datetime(2026, 3, 10, 10, 32, tzinfo=UTC)
    with rt.engine.begin() as conn:
        delivery_id = Notifier._insert(conn, 'eco', None, 'n8n', 'https://n8n.test/webhook/eco', {}, now)
        conn.execute(update(DELIVERIES).where(DELIVERIES.c.id == delivery_id).values(
            status='pending', attempts=1, last_error='HTTP 502'))
    await user.open('/')
    await user.should_see('webhook failed: HTTP 502, retrying')
    with rt.engine.begin() as conn:
        conn.execute(update(DELIVERIES).where(DELIVERIES.c.id == delivery_id).values(
            status='delivered', attempts=2, updated_at=now))
    rt.hub.publish(DeliveryChanged(delivery_id))
    await user.should_see('webhook delivered 10:32', retries=PATIENT)


async def test_each_alert_shows_where_it_was_sent(user: User) -> None:
    alert = raise_alert('t:sent', 'coder burns $40/h', publish=False)
    rt = runtime.current()
    now = datetime.now(UTC)
    with rt.engine.begin() as conn:
        for channel, status, attempts, error in (('webhook', 'delivered', 1, None), ('email', 'failed', 6, 'SMTP 451'),
                                                 ('log', 'pending', 2, 'timed out')):
            conn.execute(DELIVERIES.insert().values(kind='alert', ref_id=alert['id'], channel=channel, target='x',
                                                    payload={}, status=status, attempts=attempts, last_error=error,
                                                    created_at=now, updated_at=now))
    await user.open('/alerts')
    await user.should_see('Sent: webhook delivered · email failed after 6 attempts: SMTP 451 · '
                          'log pending (retry 2): timed out')
