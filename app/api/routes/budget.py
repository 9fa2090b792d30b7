"""Budget views: today's gauge, breakdowns for any period, the daily history, and the limits."""
from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.api.deps import WRITE, ReadConn, RuntimeDep, WriteConn
from app.api.errors import BadRequest
from services import app_settings, budget, forecast
from services.app_settings import MAX_LIMIT_MICROS
from services.money import money, usd_to_micros
from services.periods import PERIODS
from services.reconciliation import channel_totals, reconcile_last_days

router = APIRouter(prefix='/budget', tags=['budget'])
PeriodName = Literal['day', 'week', 'month']


@router.get('/summary')
def summary(conn: ReadConn, rt: RuntimeDep, period: PeriodName = 'day') -> dict[str, Any]:
    """Spent, limit, remaining and percent for today (or this week/month), by channel, with the reset time."""
    s = rt.settings
    return budget.period_summary(conn, period, s.zone, s.daily_limit_micros)


@router.get('/forecast')
def budget_forecast(conn: ReadConn, rt: RuntimeDep) -> dict[str, Any]:
    """For today, this week and this month: spent, projected (with a low/high band), the ETA at which the limit
    is reached (ISO, or null when it holds), state (no_limit, exceeded, exhausts, holds), a text and the method."""
    s = rt.settings
    return forecast.budget_forecast(conn, s.zone, s.daily_limit_micros)


def _breakdown(conn: ReadConn, rt: RuntimeDep, by: str, period: PeriodName | None, start: str | None,
               end: str | None) -> dict[str, Any]:
    try:
        span = budget.resolve_range(period, start, end, rt.settings.zone)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return budget.spend_breakdown(conn, by, span)


FromQ = Annotated[str | None, Query(alias='from', description='ISO date (local day) or datetime')]
ToQ = Annotated[str | None, Query(alias='to', description='ISO date (inclusive local day) or datetime (exclusive)')]


@router.get('/by-agent')
def by_agent(conn: ReadConn, rt: RuntimeDep, period: PeriodName | None = None, start: FromQ = None,
             end: ToQ = None) -> dict[str, Any]:
    """Spend per agent for a period (day, week, month) or from/to, largest first."""
    return _breakdown(conn, rt, 'agent_id', period, start, end)


@router.get('/by-provider')
def by_provider(conn: ReadConn, rt: RuntimeDep, period: PeriodName | None = None, start: FromQ = None,
                end: ToQ = None) -> dict[str, Any]:
    """Spend per provider for a period or from/to."""
    return _breakdown(conn, rt, 'provider', period, start, end)


@router.get('/by-model')
def by_model(conn: ReadConn, rt: RuntimeDep, period: PeriodName | None = None, start: FromQ = None,
             end: ToQ = None) -> dict[str, Any]:
    """Spend per model for a period or from/to."""
    return _breakdown(conn, rt, 'model', period, start, end)


@router.get('/by-channel')
def by_channel(conn: ReadConn, rt: RuntimeDep, period: PeriodName | None = None, start: FromQ = None,
               end: ToQ = None) -> dict[str, Any]:
    """Spend via LiteLLM and direct for a period or from/to."""
    return _breakdown(conn, rt, 'channel', period, start, end)


@router.get('/history')
def history(conn: ReadConn, rt: RuntimeDep, days: Annotated[int, Query(ge=1, le=366)] = 30) -> dict[str, Any]:
    """One point per local day for the last `days` days, today included, zero-filled."""
    s = rt.settings
    return budget.history(conn, days, s.zone, s.daily_limit_micros)


@router.get('/reconciliation')
def reconciliation(conn: ReadConn, rt: RuntimeDep, days: Annotated[int, Query(ge=1, le=366)] = 30) -> dict[str, Any]:
    """Per day and provider: via LiteLLM, billed, direct, total and the gap (LiteLLM above the bill)."""
    tolerance = rt.settings.sources.reconciliation_tolerance
    cells = reconcile_last_days(conn, days, rt.settings.zone)
    totals = channel_totals(cells)
    return {'days': days, 'timezone': rt.settings.zone.key, 'tolerance': str(tolerance),
            **money('litellm', totals['litellm']), **money('direct', totals['direct']),
            **money('total', totals['total']), 'items': [c.as_dict(tolerance) for c in cells]}


class LimitIn(BaseModel):
    limit_usd: Annotated[Decimal, Field(ge=0, le=MAX_LIMIT_MICROS // 1_000_000, allow_inf_nan=False)]


@router.get('/limits')
def get_limits(conn: ReadConn, rt: RuntimeDep) -> dict[str, Any]:
    """The budget limit for each period (null when none is set)."""
    result: dict[str, Any] = {}
    for period in PERIODS:
        limit = app_settings.get_limit(conn, period, rt.settings.daily_limit_micros)
        result[period] = money('limit', limit) if limit is not None else None
    return result


@router.put('/limits/{period}', dependencies=WRITE)
def set_limit(period: PeriodName, body: LimitIn, conn: WriteConn, rt: RuntimeDep) -> dict[str, Any]:
    """Set the day, week or month limit in USD."""
    micros = usd_to_micros(body.limit_usd)
    app_settings.set_limit(conn, period, micros)
    rt.hub.publish('settings', key=f'limit.{period}')
    return {'period': period, **money('limit', micros)}
