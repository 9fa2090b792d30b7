"""Retention: pruning the usage events older than some days (every total stays: it comes from the rollups)."""
from __future__ import annotations

from fastapi import APIRouter
from pydantic import ConfigDict, Field, StrictBool, StrictInt
from typing_extensions import TypedDict

from app.api.deps import READ, Admin, ReadConn, RuntimeDep
from app.api.errors import refusals
from services.core.inputs import Input
from services.core.settings import RETENTION_MAX_DAYS, RETENTION_MIN_DAYS
from services.spend.day_zone import day_zone
from services.usage import retention
from services.usage.retention import PruneOut

router = APIRouter(prefix='/usage', tags=['usage'])


class PruneIn(Input):
    model_config = ConfigDict(extra='forbid')

    older_than_days: StrictInt = Field(ge=RETENTION_MIN_DAYS, le=RETENTION_MAX_DAYS,
                                       description='delete the events older than this many days (rounded down to a '
                                                   'local midnight of the daily rollups: whole days go)')
    dry_run: StrictBool = Field(False, description='only count the events that would go')


class RetentionOut(TypedDict):
    pruned_before: str | None  # ISO UTC: the events before it were pruned (None: never)
    retention_days: int | None  # SPENDGAUGE_RETENTION_DAYS: the daily job keeps this many days (None: everything)
    day_zone: str  # the time zone whose midnights a prune cuts at (the daily rollups' days)


@router.get('/retention', dependencies=READ)
def get_retention(conn: ReadConn, rt: RuntimeDep) -> RetentionOut:
    """How far back events are kept: the prune watermark and the configured retention."""
    return {'pruned_before': retention.iso(retention.pruned_before(conn)),
            'retention_days': rt.settings.retention_days, 'day_zone': day_zone(conn).key}


@router.post('/prune', responses=refusals(e503='No ledger runs in this process'))
def prune(body: PruneIn, rt: RuntimeDep, actor: Admin) -> PruneOut:
    """Delete the usage events older than `older_than_days` (whole local days), or count them (`dry_run`). Every
    total, chart, report and budget counter stays the same: they come from the rollups. The usage listing says from
    when on events are kept (`pruned_before`)."""
    return rt.commands.usage.prune(actor, body.older_than_days, body.dry_run)
