"""`GET /api/v1/doctor`: `spendgauge doctor` for an admin, on the settings this server runs with."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import Admin, RuntimeDep
from services.ops.doctor import DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S, DoctorOut, diagnose_for

router = APIRouter(prefix='/doctor', tags=['operations'])


@router.get('')
async def doctor(rt: RuntimeDep, actor: Admin,
                 timeout: Annotated[float, Query(gt=0, le=MAX_TIMEOUT_S)] = DEFAULT_TIMEOUT_S) -> DoctorOut:
    """Every check of `spendgauge doctor` at once, each within `timeout` seconds (blocking ones on worker threads):
    OK, WARN, FAIL or SKIP (not configured), with the fix for each that is not OK. `ok`: no check failed."""
    return await diagnose_for(actor, rt.settings, timeout)
