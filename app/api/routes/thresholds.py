"""The Budget settings panel's agent thresholds: per agent and session, per agent and day, and pausing."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import ConfigDict, Field

from app.api.deps import READ, Admin, ReadConn, RuntimeDep
from services.budget import thresholds
from services.budget.thresholds import ThresholdsOut
from services.core.inputs import Input
from services.core.money import Usd

router = APIRouter(prefix='/thresholds', tags=['policies'])
MoreThanZero = Annotated[Usd, Field(gt=0)]


class ThresholdsIn(Input):
    model_config = ConfigDict(extra='forbid')

    session_threshold_usd: MoreThanZero | None = None
    day_threshold_usd: MoreThanZero | None = None
    pause: bool = False


@router.get('', dependencies=READ)
def get_thresholds(conn: ReadConn) -> ThresholdsOut:
    """The thresholds every agent is held to (null: none), and whether crossing one pauses the agent."""
    return thresholds.get_thresholds(conn).as_dict()


@router.put('')
def put_thresholds(body: ThresholdsIn, rt: RuntimeDep, actor: Admin) -> ThresholdsOut:
    """Replace both thresholds; a missing or null one is removed."""
    stored = rt.commands.policies.set_thresholds(actor, body.session_threshold_usd, body.day_threshold_usd,
                                                 body.pause)
    return stored.as_dict()
