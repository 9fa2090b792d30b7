"""Eco mode: agents read the flag; the dashboard, scripts and policies switch it."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import ConfigDict, StrictBool, StringConstraints

from app.api.deps import READ, Admin, ReadConn, RuntimeDep
from services.budget import eco
from services.budget.eco import EcoState
from services.core.inputs import NO_NUL, Input

router = APIRouter(prefix='/eco', tags=['eco'])
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=eco.MAX_REASON,
                                          pattern=NO_NUL)]


class EcoIn(Input):
    model_config = ConfigDict(extra='forbid')

    eco_mode: StrictBool
    reason: Reason | None = None


@router.get('', dependencies=READ)
def get_eco(conn: ReadConn) -> EcoState:
    """Whether eco mode is on, when it last changed and why."""
    return eco.get_eco(conn)


@router.post('')
def set_eco(body: EcoIn, rt: RuntimeDep, actor: Admin) -> EcoState:
    """Switch eco mode on or off (reason defaults to 'manual'); changed_at only moves when the value changes."""
    return rt.commands.eco.switch(actor, body.eco_mode, body.reason or 'manual')
