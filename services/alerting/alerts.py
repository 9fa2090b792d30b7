"""Alerts: raised once per open problem (deduplicated by key, with a cooldown after resolution), acknowledged,
resolved. Sync failures and reconciliation gaps raise them today; budget policies will too."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, insert, select, update
from typing_extensions import TypedDict

from services.core.errors import NotFound
from services.core.scrub import scrub
from services.core.tables import ALERTS
from services.live.hub import EventHub
from services.live.topics import AlertRaised

Severity = Literal['info', 'warning', 'critical']
DEFAULT_COOLDOWN = timedelta(hours=1)


class AlertOut(TypedDict):
    id: int
    type: str  # threshold_warning, threshold_critical, limit_exceeded, policy_violation, forecast_exhaustion, ...
    severity: Severity
    message: str
    dedupe_key: str  # one open alert per key
    data: dict[str, Any]
    count: int  # how often it was raised while open
    created_at: str
    last_seen_at: str
    acknowledged_at: str | None
    acknowledged_by: str | None
    resolved_at: str | None
    open: bool


class AlertList(TypedDict):
    items: list[AlertOut]  # most recently seen first
    count: int


class AlertNotFound(NotFound):
    pass


MAX_MESSAGE = 2000  # the column's length

def raise_alert(conn: Connection, type: str, severity: Severity, message: str, dedupe_key: str,
                data: dict[str, Any] | None = None, cooldown: timedelta = DEFAULT_COOLDOWN,
                now: datetime | None = None) -> tuple[AlertOut | None, bool]:
    """Open an alert, or count one more occurrence of the open alert with this key. Returns (alert, is_new); the
    alert is None when one with this key was resolved within the cooldown."""
    now = now or datetime.now(UTC)
    message = scrub(message, limit=MAX_MESSAGE)  # secrets out, then cut to the column (on insert and on update)
    latest = conn.execute(select(ALERTS).where(ALERTS.c.dedupe_key == dedupe_key)
                          .order_by(ALERTS.c.created_at.desc(), ALERTS.c.id.desc()).limit(1)).first()
    if latest is not None and latest.resolved_at is None:
        conn.execute(update(ALERTS).where(ALERTS.c.id == latest.id).values(
            last_seen_at=now, count=ALERTS.c.count + 1, message=message, severity=severity, data=data or {}))
        return get_alert(conn, latest.id), False
    if latest is not None and latest.resolved_at is not None and now - latest.resolved_at < cooldown:
        return None, False
    pk: int = conn.execute(insert(ALERTS).values(type=type, severity=severity, message=message,
                                                 dedupe_key=dedupe_key, data=data or {}, created_at=now,
                                                 last_seen_at=now, count=1).returning(ALERTS.c.id)).scalar_one()
    return get_alert(conn, pk), True


def publish_new(hub: EventHub, raised: list[tuple[AlertOut | None, bool]]) -> list[AlertOut]:
    """After the commit: announce each alert that `raise_alert` newly opened (notifiers and toasts hear of an alert
    once, when it opens); returns those alerts."""
    new = [alert for alert, is_new in raised if alert is not None and is_new]
    for alert in new:
        hub.publish(AlertRaised(alert))
    return new


def resolve_key(conn: Connection, dedupe_key: str, now: datetime | None = None, *, message: str | None = None,
                data: dict[str, Any] | None = None) -> int:
    """Resolve the open alert with this key (the problem went away, or another alert took it over: then `message`
    replaces its message and `data` is merged into its data to say so); returns how many were resolved."""
    is_open = (ALERTS.c.dedupe_key == dedupe_key, ALERTS.c.resolved_at.is_(None))
    values: dict[str, Any] = {'resolved_at': now or datetime.now(UTC)}
    if message is not None:
        values['message'] = scrub(message, limit=MAX_MESSAGE)
    if data:
        row = conn.execute(select(ALERTS.c.data).where(*is_open).limit(1)).first()
        if row is None:
            return 0
        values['data'] = {**(row.data or {}), **data}
    return conn.execute(update(ALERTS).where(*is_open).values(**values)).rowcount


def get_alert(conn: Connection, alert_id: int) -> AlertOut:
    row = conn.execute(select(ALERTS).where(ALERTS.c.id == alert_id)).first()
    if row is None:
        raise AlertNotFound(f'no alert {alert_id}')
    return _public(row)


def list_alerts(conn: Connection, status: Literal['open', 'unacknowledged', 'all'] = 'open',
                type: str | None = None, limit: int = 100) -> list[AlertOut]:
    query = select(ALERTS).order_by(ALERTS.c.last_seen_at.desc(), ALERTS.c.id.desc()).limit(limit)
    if status in ('open', 'unacknowledged'):
        query = query.where(ALERTS.c.resolved_at.is_(None))
    if status == 'unacknowledged':
        query = query.where(ALERTS.c.acknowledged_at.is_(None))
    if type:
        query = query.where(ALERTS.c.type == type)
    return [_public(r) for r in conn.execute(query)]


def acknowledge(conn: Connection, alert_id: int, by: str, now: datetime | None = None) -> AlertOut:
    get_alert(conn, alert_id)
    conn.execute(update(ALERTS).where(ALERTS.c.id == alert_id, ALERTS.c.acknowledged_at.is_(None))
                 .values(acknowledged_at=now or datetime.now(UTC), acknowledged_by=by))
    return get_alert(conn, alert_id)


def resolve(conn: Connection, alert_id: int, now: datetime | None = None) -> AlertOut:
    get_alert(conn, alert_id)
    conn.execute(update(ALERTS).where(ALERTS.c.id == alert_id, ALERTS.c.resolved_at.is_(None))
                 .values(resolved_at=now or datetime.now(UTC)))
    return get_alert(conn, alert_id)


def _public(row: Any) -> AlertOut:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {'id': row.id, 'type': row.type, 'severity': row.severity, 'message': row.message,
            'dedupe_key': row.dedupe_key, 'data': row.data or {}, 'count': row.count,
            'created_at': row.created_at.isoformat(), 'last_seen_at': row.last_seen_at.isoformat(),
            'acknowledged_at': iso(row.acknowledged_at), 'acknowledged_by': row.acknowledged_by,
            'resolved_at': iso(row.resolved_at), 'open': row.resolved_at is None}
