"""Budget views: today's gauge, breakdowns for any period, the daily history, and the limits."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import ConfigDict, Field, field_validator, model_validator

from app.api.deps import PLAN, READ, Admin, ReadConn, RuntimeDep
from services.budget import limits
from services.budget.limits import LimitAction, Limits
from services.budget.remaining import RemainingOut, remaining
from services.commands.limits import LimitSet
from services.core.errors import Invalid
from services.core.inputs import Input, Label
from services.core.money import Usd, usd_to_micros
from services.core.periods import Period, checked_utc
from services.insights import forecast, planner
from services.insights.efficiency import EfficiencyBy, EfficiencyOut, token_efficiency
from services.insights.forecast import BudgetForecast
from services.insights.planner import ScheduleOut
from services.spend import budget
from services.spend import reconciliation as reconciled
from services.spend.budget import (
    AgentBreakdown,
    ChannelBreakdown,
    History,
    ModelBreakdown,
    PeriodSummary,
    ProviderBreakdown,
)
from services.spend.reconciliation import Reconciliation

router = APIRouter(prefix='/budget', tags=['budget'])
PeriodName = Literal['day', 'week', 'month']


@router.get('/summary', dependencies=READ)
def summary(conn: ReadConn, rt: RuntimeDep, period: PeriodName = 'day') -> PeriodSummary:
    """Spent, limit, remaining and percent for today (or this week/month), by channel, with the reset time."""
    return budget.period_summary(conn, rt.settings.budget, period)


@router.get('/remaining', dependencies=PLAN)
def budget_remaining(conn: ReadConn, rt: RuntimeDep, agent_id: Annotated[Label | None, Query()] = None,
                     session_id: Annotated[Label | None, Query()] = None,
                     project: Annotated[Label | None, Query()] = None) -> RemainingOut:
    """What is left today, and for this agent, session and project: the day's gauge and the decision a call would
    get now, with each matched policy's remaining. Reads only (nothing held, no alert): a read or an ingest token
    will do."""
    return remaining(conn, rt.settings.budget, rt.checker, agent_id, session_id, project)


@router.get('/forecast', dependencies=READ)
def budget_forecast(conn: ReadConn, rt: RuntimeDep) -> BudgetForecast:
    """For today, this week and this month: spent, projected (with a low/high band), the ETA at which the limit
    is reached (ISO, or null when it holds), state (no_limit, exceeded, exhausts, holds), a text and the method."""
    return forecast.budget_forecast(conn, rt.settings.budget)


def span_of(rt: RuntimeDep, period: PeriodName | None, start: str | None, end: str | None) -> Period:
    return budget.resolve_range(period, start, end, rt.settings.zone)


FromQ = Annotated[str | None, Query(alias='from', description='ISO date (local day) or datetime')]
ToQ = Annotated[str | None, Query(alias='to', description='ISO date (inclusive local day) or datetime (exclusive)')]


@router.get('/by-agent', dependencies=READ)
def by_agent(conn: ReadConn, rt: RuntimeDep, period: PeriodName | None = None, start: FromQ = None,
             end: ToQ = None) -> AgentBreakdown:
    """Spend per agent for a period (day, week, month) or from/to, largest first."""
    return budget.spend_breakdown(conn, 'agent_id', span_of(rt, period, start, end))


@router.get('/efficiency', dependencies=READ)
def efficiency(conn: ReadConn, rt: RuntimeDep, by: EfficiencyBy = 'agent', period: PeriodName | None = None,
               start: FromQ = None, end: ToQ = None,
               agent_id: Annotated[str | None, Query(max_length=200, description="only this agent's calls")] = None,
               ) -> EfficiencyOut:
    """Token efficiency per agent or model for a period or from/to: output tokens per input token, the cache's
    share of the input, the cost of 1,000 output tokens, and that cost day by day. With `agent_id` and `by=model`:
    the models one agent used."""
    return token_efficiency(conn, span_of(rt, period, start, end), rt.settings.zone, by, agent_id)


@router.get('/by-provider', dependencies=READ)
def by_provider(conn: ReadConn, rt: RuntimeDep, period: PeriodName | None = None, start: FromQ = None,
                end: ToQ = None) -> ProviderBreakdown:
    """Spend per provider for a period or from/to."""
    return budget.spend_breakdown(conn, 'provider', span_of(rt, period, start, end))


@router.get('/by-model', dependencies=READ)
def by_model(conn: ReadConn, rt: RuntimeDep, period: PeriodName | None = None, start: FromQ = None,
             end: ToQ = None) -> ModelBreakdown:
    """Spend per model for a period or from/to."""
    return budget.spend_breakdown(conn, 'model', span_of(rt, period, start, end))


@router.get('/by-channel', dependencies=READ)
def by_channel(conn: ReadConn, rt: RuntimeDep, period: PeriodName | None = None, start: FromQ = None,
               end: ToQ = None) -> ChannelBreakdown:
    """Spend via LiteLLM and direct for a period or from/to."""
    return budget.spend_breakdown(conn, 'channel', span_of(rt, period, start, end))


@router.get('/history', dependencies=READ)
def history(conn: ReadConn, rt: RuntimeDep, days: Annotated[int, Query(ge=1, le=366)] = 30) -> History:
    """One point per local day for the last `days` days, today included, zero-filled."""
    return budget.history(conn, rt.settings.budget, days)


@router.get('/reconciliation', dependencies=READ)
def reconciliation(conn: ReadConn, rt: RuntimeDep, days: Annotated[int, Query(ge=1, le=366)] = 30) -> Reconciliation:
    """Per day and provider: via LiteLLM, billed, direct, total and the gap (LiteLLM above the bill)."""
    return reconciled.reconciliation(conn, days, rt.settings.zone, rt.settings.sources.reconciliation_tolerance)


class LimitIn(Input):
    model_config = ConfigDict(extra='forbid')

    limit_usd: Usd
    action: LimitAction | None = Field(default=None, description='how far the limit goes: warn, throttle or block '
                                       '(a new limit: block; unchanged when missing)')
    soft_percent: int | None = Field(default=None, ge=1, le=100, description='warn from here (a new limit: 80)')
    critical_percent: int | None = Field(default=None, ge=1, le=100,
                                         description='throttle from here (a new limit: 95)')


@router.get('/limits', dependencies=READ)
def get_limits(conn: ReadConn, rt: RuntimeDep) -> Limits:
    """The budget limit for each period (null when none is set)."""
    return limits.get_limits(conn)


@router.put('/limits/{period}')
def set_limit(period: PeriodName, body: LimitIn, rt: RuntimeDep, actor: Admin) -> LimitSet:
    """Set the day, week or month limit: a global policy of the period, listed with the others under /policies. It
    overrides the environment's limit from then on."""
    return rt.commands.limits.set(actor, period, usd_to_micros(body.limit_usd), body.action, body.soft_percent,
                                  body.critical_percent)


@router.delete('/limits/{period}')
def remove_limit(period: PeriodName, rt: RuntimeDep, actor: Admin) -> LimitSet:
    """No limit for the period from now on (the environment's included)."""
    return rt.commands.limits.remove(actor, period)


class ScheduleTaskIn(Input):
    model_config = ConfigDict(extra='forbid')

    id: Label
    priority: Annotated[Decimal, Field(ge=0, le=planner.MAX_PRIORITY, allow_inf_nan=False,
                                       description='non-negative; rounded to six decimal places')]
    estimated_cost_usd: Usd \
        | None = Field(default=None, description="estimated from the agent's finished tasks when missing")
    deadline: datetime | None = Field(default=None, description='ISO time (UTC when naive); deferred after it')
    agent_id: Label | None = None

    @field_validator('priority', mode='before')
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError('must be a number')
        return value

    @field_validator('deadline')
    @classmethod
    def _deadline_in_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else checked_utc(value, 'deadline')


class ScheduleIn(Input):
    model_config = ConfigDict(extra='forbid')

    tasks: list[ScheduleTaskIn] = Field(max_length=planner.MAX_TASKS)
    remaining_usd: Usd | None = \
        Field(default=None, description="the budget to plan against; what is left of today's limit when missing")

    @model_validator(mode='after')
    def _unique_ids(self) -> ScheduleIn:
        """Checked with the body, before the budget is looked up."""
        seen: set[str] = set()
        for index, task in enumerate(self.tasks):
            if task.id in seen:
                raise ValueError(f'tasks.{index}.id: duplicate id {task.id!r}')
            seen.add(task.id)
        return self


def _priority(value: Decimal) -> int | Decimal:
    rounded = value.quantize(Decimal(1).scaleb(-planner.PRIORITY_PLACES), rounding=ROUND_HALF_EVEN)
    return int(rounded) if rounded == rounded.to_integral_value() else rounded.normalize()


@router.post('/schedule', dependencies=PLAN)
def schedule(body: ScheduleIn, conn: ReadConn, rt: RuntimeDep) -> ScheduleOut:
    """Which of these tasks to run now within the remaining budget (most total priority; in order of priority per
    dollar) and why the others wait. Reads only: a read or an ingest token will do."""
    now = datetime.now(UTC)
    source: Literal['given', 'today']
    if body.remaining_usd is not None:
        remaining, source = usd_to_micros(body.remaining_usd), 'given'
    else:
        left = budget.period_summary(conn, rt.settings.budget, 'day', now)['remaining_micros']
        if left is None:
            raise Invalid('remaining_usd: no daily limit is set, so give the budget to plan against')
        remaining, source = left, 'today'
    items = [planner.PlanTask(t.id, _priority(t.priority),
                              None if t.estimated_cost_usd is None else usd_to_micros(t.estimated_cost_usd),
                              t.deadline, t.agent_id) for t in body.tasks]
    result = planner.plan(planner.estimate_missing(conn, items), remaining, now)
    return {**result.as_dict(), 'budget_source': source}
