"""`POST /check`: may this call go ahead? Answered from in-memory counters, without a database query."""
from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ConfigDict, Field, model_validator
from starlette.background import BackgroundTask
from typing_extensions import TypedDict

from app.api.deps import INGEST, RuntimeDep
from app.api.errors import refusals
from app.runtime import Runtime
from services.budget.checker import CheckRequest, CheckResult
from services.core.errors import Unavailable
from services.core.inputs import Input, Label
from services.core.money import Usd, usd_to_micros
from services.usage.pricing import TokenCounts

router = APIRouter(tags=['policies'])
Id = Label
MAX_TOKENS = 100_000_000


class CheckIn(Input):
    model_config = ConfigDict(extra='forbid')

    agent_id: Id | None = None
    session_id: Id | None = None
    user_id: Id | None = None
    project: Id | None = None
    tags: list[Id] = Field(default_factory=list, max_length=50)
    provider: Id | None = None
    model: Id | None = None
    estimated_input_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    estimated_output_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    estimated_cost_usd: Annotated[Usd, Field(le=1_000_000)] | None = None
    reserve: bool = Field(default=False, description='hold the estimate against every matching policy until the '
                          "usage with `event_id` arrives (or the hold expires), so concurrent callers can't overshoot")
    event_id: Id | None = Field(default=None, description="the event id this call's usage will carry")

    @model_validator(mode='after')
    def _one_estimate(self) -> CheckIn:
        if self.reserve and not self.event_id:
            raise ValueError("event_id: a reservation needs the event id the call's usage will carry")
        tokens = self.estimated_input_tokens is not None or self.estimated_output_tokens is not None
        if tokens and self.estimated_cost_usd is not None:
            raise ValueError('estimated_cost_usd: give either estimated tokens or estimated_cost_usd, not both')
        if tokens and not self.model:
            raise ValueError('model: needed to price estimated tokens')
        return self


@router.post('/check', dependencies=INGEST, response_class=Response,
             responses={200: {'model': CheckResult, 'description': 'The decision, with a reason for each policy that '
                                                                   'is not allow'},
                        **refusals(e503='Budget checks do not run in this process')})
async def check(body: CheckIn, rt: RuntimeDep) -> Response:
    """allow / warn / throttle / block for the call described, counting its estimate against what is left."""
    # async, like its dependencies (app/api/deps.py): the whole check is in memory and runs on the event loop
    # without a thread hop. The alert writes a block defers (once per policy and period) run on a worker thread
    # after the answer has been sent.
    deferred: list[Callable[[], None]] = []
    result = answer(rt, body, deferred)
    return Response(orjson.dumps(result), media_type='application/json',  # plain dicts: skip FastAPI's encoder
                    background=BackgroundTask(run_deferred, deferred) if deferred else None)


def answer(rt: Runtime, body: CheckIn, deferred: list[Callable[[], None]]) -> CheckResult:
    """The check's answer (also the MCP tool check_call's); the alert writes a block needs go into `deferred`."""
    provider = body.provider.lower() if body.provider else None
    estimate, note = 0, None
    if body.estimated_cost_usd is not None:
        estimate = usd_to_micros(body.estimated_cost_usd)
    elif body.model:
        tokens = TokenCounts(body.estimated_input_tokens or 0, body.estimated_output_tokens or 0)
        resolved = provider or rt.pricer.resolve('', body.model)
        quote = rt.pricer.quote((resolved or 'unknown').split('/', 1)[0], body.model, tokens)
        estimate = quote.cost_micros
        if quote.cost_source == 'unpriced':
            note = f'estimate: {body.model} has no known price, counted as $0'
    if rt.checker is None:
        raise Unavailable('budget checks are not running')
    started = perf_counter()
    result = rt.checker.check(CheckRequest(body.agent_id, body.session_id, body.user_id, body.project,
                                           tuple(body.tags), provider, body.model, estimate), deferred=deferred,
                              reserve=body.event_id if body.reserve else None)
    rt.metrics.checked(result['decision'], perf_counter() - started)
    if note:
        result['reasons'].append(note)
    return result


async def run_deferred(jobs: list[Callable[[], None]]) -> None:
    await run_in_threadpool(_run_all, jobs)


def _run_all(jobs: list[Callable[[], None]]) -> None:
    for job in jobs:
        job()


class Released(TypedDict):
    event_id: str
    released: bool  # false: nothing was held (the usage arrived, the hold expired, or none was made)


@router.delete('/check/reservations/{event_id}', dependencies=INGEST, responses=refusals(
    e503='Budget checks do not run in this process'))
async def release(event_id: Annotated[Id, Path()], rt: RuntimeDep) -> Released:
    """Let the estimate a check held go, for a call that did not happen."""
    if rt.checker is None:
        raise Unavailable('budget checks are not running')
    return {'event_id': event_id, 'released': rt.checker.release(event_id)}
