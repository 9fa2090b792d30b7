"""Alerts: list, acknowledge, resolve."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from app.api.deps import READ, Admin, ReadConn, RowId, RuntimeDep
from services.alerting import alerts, notify
from services.alerting.alerts import AlertList, AlertOut
from services.alerting.notify import DeliveryList
from services.core.inputs import Input

router = APIRouter(prefix='/alerts', tags=['alerts'])


class AckIn(Input):
    by: Annotated[str, Field(min_length=1, max_length=200, pattern=r'^[^\x00]*$')] = 'api'


@router.get('', dependencies=READ)
def list_alerts(conn: ReadConn, status: Literal['open', 'unacknowledged', 'all'] = 'open',
                type: Annotated[str | None, Query(max_length=200)] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AlertList:
    """Alerts, most recent first; `status=open` (default), `unacknowledged` or `all`."""
    items = alerts.list_alerts(conn, status, type, limit)
    return {'items': items, 'count': len(items)}


@router.get('/deliveries', dependencies=READ)
def list_deliveries(conn: ReadConn, kind: Literal['alert', 'eco'] | None = None,
                    status: Literal['pending', 'delivered', 'failed'] | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> DeliveryList:
    """Every notification sent (alerts and eco-mode changes, per channel), newest first, with its attempts and
    last error: failures are kept and retried, never dropped."""
    items = notify.list_deliveries(conn, kind, limit, status)
    return {'items': items, 'count': len(items)}


@router.post('/{alert_id}/ack')
def acknowledge(alert_id: RowId, rt: RuntimeDep, actor: Admin, body: AckIn | None = None) -> AlertOut:
    """Acknowledge an alert (by whom)."""
    return rt.commands.alerts.acknowledge(actor, alert_id, (body or AckIn()).by)


@router.post('/{alert_id}/resolve')
def resolve(alert_id: RowId, rt: RuntimeDep, actor: Admin) -> AlertOut:
    """Resolve an alert."""
    return rt.commands.alerts.resolve(actor, alert_id)
