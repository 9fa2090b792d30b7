"""Alerts: list, acknowledge, resolve."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from app.api.deps import WRITE, ReadConn, RowId, RuntimeDep, WriteConn
from services.alerting import alerts, notify

router = APIRouter(prefix='/alerts', tags=['alerts'])


class AckIn(BaseModel):
    by: Annotated[str, Field(min_length=1, max_length=200, pattern=r'^[^\x00]*$')] = 'api'


@router.get('')
def list_alerts(conn: ReadConn, status: Literal['open', 'unacknowledged', 'all'] = 'open', type: str | None = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """Alerts, most recent first; `status=open` (default), `unacknowledged` or `all`."""
    items = alerts.list_alerts(conn, status, type, limit)
    return {'items': items, 'count': len(items)}


@router.get('/deliveries')
def list_deliveries(conn: ReadConn, kind: Literal['alert', 'eco'] | None = None,
                    status: Literal['pending', 'delivered', 'failed'] | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """Every notification sent (alerts and eco-mode changes, per channel), newest first, with its attempts and
    last error: failures are kept and retried, never dropped."""
    items = notify.list_deliveries(conn, kind, limit, status)
    return {'items': items, 'count': len(items)}


@router.post('/{alert_id}/ack', dependencies=WRITE)
def acknowledge(alert_id: RowId, conn: WriteConn, rt: RuntimeDep, body: AckIn | None = None) -> dict[str, Any]:
    """Acknowledge an alert (by whom)."""
    try:
        result = alerts.acknowledge(conn, alert_id, (body or AckIn()).by)
    except alerts.AlertNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    conn.commit()  # before the news goes out: listeners read what was written
    rt.hub.publish('alerts', alert_id=alert_id)
    return result


@router.post('/{alert_id}/resolve', dependencies=WRITE)
def resolve(alert_id: RowId, conn: WriteConn, rt: RuntimeDep) -> dict[str, Any]:
    """Resolve an alert."""
    try:
        result = alerts.resolve(conn, alert_id)
    except alerts.AlertNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    conn.commit()  # before the news goes out: listeners read what was written
    rt.hub.publish('alerts', alert_id=alert_id)
    return result
