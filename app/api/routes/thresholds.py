"""The Budget settings panel's agent thresholds: per agent and session, per agent and day, and pausing."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import WRITE, ReadConn, RuntimeDep, WriteConn
from app.api.errors import BadRequest
from services.budget import thresholds
from services.budget.limits import MAX_LIMIT_MICROS
from services.budget.policies import PolicyInvalid

router = APIRouter(prefix='/thresholds', tags=['policies'])
MAX_USD = MAX_LIMIT_MICROS // 1_000_000


class ThresholdsIn(BaseModel):
    model_config = ConfigDict(extra='forbid')

    session_threshold_usd: Decimal | None = Field(default=None, gt=0, le=MAX_USD)
    day_threshold_usd: Decimal | None = Field(default=None, gt=0, le=MAX_USD)
    pause: bool = False


@router.get('')
def get_thresholds(conn: ReadConn) -> dict[str, Any]:
    """The thresholds every agent is held to (null: none), and whether crossing one pauses the agent."""
    return thresholds.get_thresholds(conn).as_dict()


@router.put('', dependencies=WRITE)
def put_thresholds(body: ThresholdsIn, conn: WriteConn, rt: RuntimeDep) -> dict[str, Any]:
    """Replace both thresholds; a missing or null one is removed."""
    try:
        stored = thresholds.set_thresholds(conn, body.session_threshold_usd, body.day_threshold_usd, body.pause)
    except PolicyInvalid as exc:
        raise BadRequest(str(exc)) from None
    conn.commit()
    rt.policies_changed()
    return stored.as_dict()
