"""Alerts page `/alerts`: open or all alerts, acknowledge and resolve; refreshed from the shared feed when any alert
changes (its stamp), never by polling."""
from __future__ import annotations

from typing import Any

from nicegui import background_tasks, run, ui

from app import runtime
from app.feed import feed
from components.layout import frame
from services.alerting import alerts, notify

SEVERITY_COLOURS = {'critical': 'red', 'warning': 'orange', 'info': 'blue'}
LIMIT = 200


def _load(status: str) -> list[dict[str, Any]]:
    """The alerts, each with its notification deliveries."""
    with runtime.current().engine.connect() as conn:
        items = alerts.list_alerts(conn, status, limit=LIMIT)  # type: ignore[arg-type]
        sent = notify.list_deliveries(conn, 'alert', limit=10 * LIMIT, ref_ids=[a['id'] for a in items])
    by_alert: dict[int, list[dict[str, Any]]] = {}
    for delivery in reversed(sent):
        by_alert.setdefault(delivery['ref_id'], []).append(delivery)
    return [{**a, 'deliveries': by_alert.get(a['id'], [])} for a in items]


def delivery_text(delivery: dict[str, Any]) -> str:
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
    view = AlertsView(data.get('alerts_stamp'))
    view.items = await run.io_bound(_load, view.status)
    with frame('Alerts'):
        view.build()
    unsubscribe = feed().subscribe(view.on_feed)
    ui.context.client.on_delete(unsubscribe)


class AlertsView:
    def __init__(self, stamp: str | None) -> None:
        self.stamp = stamp
        self.status = 'open'
        self.items: list[dict[str, Any]] = []
        self.by: ui.input | None = None

    def build(self) -> None:
        with ui.row().classes('w-full items-center justify-between'):
            ui.label('Alerts').classes('text-h6')
            with ui.row().classes('items-center gap-4'):
                self.by = ui.input('Acknowledge as', value='dashboard').props('dense').mark('ack-by')
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

    def _card(self, alert: dict[str, Any]) -> None:
        with ui.card().classes('w-full').mark(f'alert-{alert["id"]}'):
            with ui.row().classes('w-full items-center justify-between no-wrap'):
                with ui.row().classes('items-center gap-2'):
                    ui.badge(alert['severity'], color=SEVERITY_COLOURS.get(alert['severity'], 'grey'))
                    ui.label(alert['type']).classes('text-subtitle2')
                    if alert['count'] > 1:
                        ui.label(f'{alert["count"]} times').classes('text-caption text-grey')
                with ui.row().classes('items-center gap-1'):
                    if alert['open'] and not alert['acknowledged_at']:
                        ui.button('Acknowledge', on_click=lambda a=alert: self._ack(a['id'])) \
                            .props('flat dense').mark(f'ack-{alert["id"]}')
                    if alert['open']:
                        ui.button('Resolve', on_click=lambda a=alert: self._resolve(a['id'])) \
                            .props('flat dense color=positive').mark(f'resolve-{alert["id"]}')
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
        self.items = await run.io_bound(_load, self.status)
        self.cards.refresh()

    def on_feed(self, data: dict[str, Any]) -> None:
        if data.get('alerts_stamp') != self.stamp:
            self.stamp = data.get('alerts_stamp')
            background_tasks.create(self.reload(), name='alerts page reload')

    async def _status_changed(self, event: Any) -> None:
        self.status = event.value
        await self.reload()

    async def _ack(self, alert_id: int) -> None:
        by = ((self.by.value if self.by else '') or 'dashboard').strip()[:200] or 'dashboard'
        await self._change(alert_id, lambda conn: alerts.acknowledge(conn, alert_id, by), 'Acknowledged')

    async def _resolve(self, alert_id: int) -> None:
        await self._change(alert_id, lambda conn: alerts.resolve(conn, alert_id), 'Resolved')

    async def _change(self, alert_id: int, action: Any, done: str) -> None:
        rt = runtime.current()

        def write() -> None:
            with rt.engine.begin() as conn:
                action(conn)
        try:
            await run.io_bound(write)
        except alerts.AlertNotFound:
            ui.notify(f'Alert {alert_id} is gone', type='warning')
            return
        rt.hub.publish('alerts', alert_id=alert_id)
        ui.notify(f'{done} alert {alert_id}')
        await self.reload()
