"""The Budget settings panel's agent thresholds: per agent and session, per agent and day, and pausing."""
from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import Caller, ReadConn, RuntimeDep
from services.budget import thresholds
from services.budget.limits import MAX_LIMIT_MICROS
from services.budget.thresholds import ThresholdsOut

router = APIRouter(prefix='/thresholds', tags=['policies'])
MAX_USD = MAX_LIMIT_MICROS // 1_000_000


class ThresholdsIn(BaseModel):
    model_config = ConfigDict(extra='forbid')

    session_threshold_usd: Decimal | None = Field(default=None, gt=0, le=MAX_USD)
    day_threshold_usd: Decimal | None = Field(default=None, gt=0, le=MAX_USD)
    pause: bool = False


@router.get('')
def get_thresholds(conn: ReadConn) -> ThresholdsOut:
    """The thresholds every agent is held to (null: none), and whether crossing one pauses the agent."""
    return thresholds.get_thresholds(conn).as_dict()


@router.put('')
def put_thresholds(body: ThresholdsIn, rt: RuntimeDep, actor: Caller) -> ThresholdsOut:
    """Replace both thresholds; a missing or null one is removed."""
    stored = rt.commands.policies.set_thresholds(actor, body.session_threshold_usd, body.day_threshold_usd,
                                                 body.pause)
    return stored.as_dict()
