"""The optimiser: what the period's calls would have cost on other models (cost only, never quality)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import READ, ReadConn, RuntimeDep
from app.api.routes.budget import FromQ, PeriodName, ToQ, span_of
from services.core.inputs import Label
from services.insights.optimize import OptimizeOut, optimize

router = APIRouter(tags=['budget'])


@router.get('/optimize', dependencies=READ)
def optimize_spend(conn: ReadConn, rt: RuntimeDep, agent_id: Annotated[Label | None, Query()] = None,
                   period: PeriodName | None = None, start: FromQ = None, end: ToQ = None) -> OptimizeOut:
    """Each agent's calls (and each of its models') for a period (default day) or from/to, re-priced on the same
    provider's cheaper models and on SPENDGAUGE_OPTIMIZE_SUBSTITUTES: the saving per day and per 30-day month, the
    share of sampled calls that fit each candidate's context window, and what prompt caching could save. About cost
    only: `note` says so in every answer."""
    return optimize(conn, rt.pricer, span_of(rt, period, start, end), rt.settings.zone, rt.settings.substitutes,
                    agent_id)
