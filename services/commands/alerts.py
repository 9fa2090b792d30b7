"""Alerts: raised by the budget checker and the scheduled checks, acknowledged and resolved by people."""
from __future__ import annotations

from typing import Any

from services.alerting import alerts
from services.alerting.alerts import AlertOut, Severity
from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.live.topics import AlertRaised, AlertsChanged


class AlertCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx

    def acknowledge(self, actor: Actor, alert_id: int, by: str | None = None) -> AlertOut:
        """Acknowledged by `by`, or by the actor's name."""
        require(actor, Role.ADMIN, 'acknowledging an alert')
        with self.ctx.audited(actor, 'alerts.acknowledge', f'alert:{alert_id}') as (conn, entry):
            entry.before = alerts.get_alert(conn, alert_id)
            alert = entry.after = alerts.acknowledge(conn, alert_id, by or actor.name)
        self.ctx.publish(AlertsChanged(alert_id, 'acknowledged'))
        return alert

    def resolve(self, actor: Actor, alert_id: int) -> AlertOut:
        require(actor, Role.ADMIN, 'resolving an alert')
        with self.ctx.audited(actor, 'alerts.resolve', f'alert:{alert_id}') as (conn, entry):
            entry.before = alerts.get_alert(conn, alert_id)
            alert = entry.after = alerts.resolve(conn, alert_id)
        self.ctx.publish(AlertsChanged(alert_id, 'resolved'))
        return alert

    def raise_(self, actor: Actor, type_: str, severity: Severity, message: str, dedupe_key: str,
               data: dict[str, Any]) -> AlertOut | None:
        """Open an alert, or count the open one with this key again. A new alert is announced (notifiers, toasts);
        returns it, or None when it was open already or resolved within its cooldown."""
        require(actor, Role.ADMIN, 'raising an alert')
        with self.ctx.audited(actor, 'alerts.raise', f'alert:{dedupe_key}') as (conn, entry):
            alert, is_new = alerts.raise_alert(conn, type_, severity, message, dedupe_key, data)
            entry.after = alert
            if alert is None or not is_new:  # counted again, or within its cooldown: not a new alert to trail
                entry.unchanged()
        if alert is None or not is_new:
            return None
        self.ctx.publish(AlertRaised(alert))
        return alert
