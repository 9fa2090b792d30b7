"""Alerts page `/alerts`: open or all alerts, acknowledge and resolve; refreshed from the shared feed when any alert
changes (its stamp), never by polling."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from nicegui import background_tasks, run, ui
from sqlalchemy import Connection

from app import runtime
from app.feed import feed
from app.security.session import can_change, page_actor
from components.layout import frame, lock
from services.alerting import alerts, notify
from services.alerting.alerts import AlertOut
from services.alerting.notify import DeliveryOut
from services.core.access import Actor
from services.core.errors import DomainError
from services.dashboard import DashboardSnapshot, Part

SEVERITY_COLOURS = {'critical': 'red', 'warning': 'orange', 'info': 'blue'}
LIMIT = 200


class AlertWithDeliveries(AlertOut):
    deliveries: list[DeliveryOut]  # oldest first


def _load(status: Literal['open', 'all']) -> list[AlertWithDeliveries]:
    """The alerts, each with its notification deliveries."""
    return runtime.current().read(_with_deliveries, status)


def _with_deliveries(conn: Connection, status: Literal['open', 'all']) -> list[AlertWithDeliveries]:
    items = alerts.list_alerts(conn, status, limit=LIMIT)
    sent = notify.list_deliveries(conn, 'alert', limit=10 * LIMIT, ref_ids=[a['id'] for a in items])
    by_alert: dict[int | None, list[DeliveryOut]] = {}
    for delivery in reversed(sent):
        by_alert.setdefault(delivery['ref_id'], []).append(delivery)
    return [{**a, 'deliveries': by_alert.get(a['id'], [])} for a in items]


def delivery_text(delivery: DeliveryOut) -> str:
    """`webhook delivered`, `email failed after 6 attempts: timed out`, `slack pending (retry 2)`."""
    channel, status, attempts = delivery['channel'], delivery['status'], delivery['attempts']
    if status == 'delivered':
        return f'{channel} delivered'
    error = f': {delivery["last_error"]}' if delivery.get('last_error') else ''
    if status == 'failed':
        return f'{channel} failed after {attempts} attempts{error}'
    return f'{channel} pending{f" (retry {attempts})" if attempts else ""}{error}'


def _when(iso: str | None) -> str:
    return f'{iso[:16].replace("T", " ")} UTC' if iso else ''


@ui.page('/alerts')
async def alerts_page() -> None:
    data = await feed().current()
    view = AlertsView(data.alerts['stamp'])
    items = await run.io_bound(_load, view.status)
    if items is None:  # the app is stopping
        return
    view.items = items
    with frame('Alerts'):
        view.build()
    unsubscribe = feed().subscribe(view.on_feed, parts={Part.ALERTS})
    ui.context.client.on_delete(unsubscribe)


class AlertsView:
    def __init__(self, stamp: str | None) -> None:
        self.stamp = stamp
        self.status: Literal['open', 'all'] = 'open'
        self.items: list[AlertWithDeliveries] = []
        self.by: ui.input | None = None
        self.editable = can_change()

    def build(self) -> None:
        with ui.row().classes('w-full items-center justify-between'):
            ui.label('Alerts').classes('text-h6')
            with ui.row().classes('items-center gap-4'):
                self.by = ui.input('Acknowledge as', value='dashboard').props('dense').mark('ack-by')
                if not self.editable:
                    lock(self.by)
                ui.toggle({'open': 'Open', 'all': 'All'}, value=self.status, on_change=self._status_changed) \
                    .mark('alerts-filter')
        self.cards()

    @ui.refreshable_method
    def cards(self) -> None:
        if not self.items:
            ui.label('No open alerts' if self.status == 'open' else 'No alerts yet').classes('text-grey') \
                .mark('alerts-empty')
            return
        with ui.column().classes('w-full gap-2'):
            for alert in self.items:
                self._card(alert)

    def _card(self, alert: AlertWithDeliveries) -> None:
        with ui.card().classes('w-full').mark(f'alert-{alert["id"]}'):
            with ui.row().classes('w-full items-center justify-between no-wrap'):
                with ui.row().classes('items-center gap-2'):
                    ui.badge(alert['severity'], color=SEVERITY_COLOURS.get(alert['severity'], 'grey'))
                    ui.label(alert['type']).classes('text-subtitle2')
                    if alert['count'] > 1:
                        ui.label(f'{alert["count"]} times').classes('text-caption text-grey')
                with ui.row().classes('items-center gap-1'):
                    if alert['open'] and not alert['acknowledged_at']:
                        ack = ui.button('Acknowledge', on_click=lambda a=alert: self._ack(a['id'])) \
                            .props('flat dense').mark(f'ack-{alert["id"]}')
                        if not self.editable:
                            lock(ack)
                    if alert['open']:
                        resolve = ui.button('Resolve', on_click=lambda a=alert: self._resolve(a['id'])) \
                            .props('flat dense color=positive').mark(f'resolve-{alert["id"]}')
                        if not self.editable:
                            lock(resolve)
            ui.label(alert['message']).classes('text-body2')
            times = [f'first {_when(alert["created_at"])}', f'last {_when(alert["last_seen_at"])}']
            if alert['acknowledged_at']:
                times.append(f'acknowledged by {alert["acknowledged_by"]} {_when(alert["acknowledged_at"])}')
            if alert['resolved_at']:
                times.append(f'resolved {_when(alert["resolved_at"])}')
            ui.label(' · '.join(times)).classes('text-caption text-grey')
            if alert.get('deliveries'):
                ui.label('Sent: ' + ' · '.join(delivery_text(d) for d in alert['deliveries'])) \
                    .classes('text-caption text-grey').mark(f'deliveries-{alert["id"]}')

    async def reload(self) -> None:
        items = await run.io_bound(_load, self.status)
        if items is None:
            return
        self.items = items
        self.cards.refresh()

    def on_feed(self, data: DashboardSnapshot) -> None:
        if data.alerts['stamp'] != self.stamp:
            self.stamp = data.alerts['stamp']
            background_tasks.create(self.reload(), name='alerts page reload')

    async def _status_changed(self, event: Any) -> None:
        self.status = event.value
        await self.reload()

    async def _ack(self, alert_id: int) -> None:
        by = ((self.by.value if self.by else '') or 'dashboard').strip()[:200] or 'dashboard'
        commands = runtime.current().commands.alerts
        await self._change(alert_id, lambda actor: commands.acknowledge(actor, alert_id, by), 'Acknowledged')

    async def _resolve(self, alert_id: int) -> None:
        commands = runtime.current().commands.alerts
        await self._change(alert_id, lambda actor: commands.resolve(actor, alert_id), 'Resolved')

    async def _change(self, alert_id: int, command: Callable[[Actor], object], done: str) -> None:
        try:
            await run.io_bound(command, page_actor())
        except alerts.AlertNotFound:
            ui.notify(f'Alert {alert_id} is gone', type='warning')
            return
        except DomainError as exc:
            ui.notify(str(exc), type='warning')
            return
        ui.notify(f'{done} alert {alert_id}')
        await self.reload()
