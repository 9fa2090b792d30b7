"""The MCP tools in the server process: the same code the REST routes run, with the caller's role checked here as
the routes check it (get_budget: read or ingest; check_call and record_usage: ingest; get_forecast and
suggest_cheaper_model: read). Database reads run on worker threads, usage in ingest's lane, checks in memory."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from app.api.ingest import lane
from app.api.routes.check import CheckIn, answer, run_deferred
from app.mcp_server.backend import Period, Refused
from app.runtime import Runtime
from services.budget.remaining import remaining
from services.core.access import Actor, Role
from services.core.errors import DomainError
from services.insights.forecast import budget_forecast
from services.insights.optimize import optimize
from services.spend.budget import resolve_range
from services.usage.events import UsageEventIn

T = TypeVar('T')


class LocalBackend:
    def __init__(self, rt: Runtime, actor: Actor, user_agent: str | None = None) -> None:
        self.rt = rt
        self.actor = actor
        self.user_agent = user_agent

    async def remaining(self, agent_id: str | None, session_id: str | None, project: str | None) -> dict[str, Any]:
        self._needs('get_budget', Role.READ, Role.INGEST)
        return dict(await self._off_loop(self.rt.read, remaining, self.rt.settings.budget, self.rt.checker, agent_id,
                                         session_id, project))

    async def check(self, call: CheckIn) -> dict[str, Any]:
        self._needs('check_call', Role.INGEST)
        deferred: list[Callable[[], None]] = []
        try:
            result = answer(self.rt, call, deferred)  # in memory, as POST /check answers on the event loop
        except DomainError as exc:
            raise Refused(str(exc)) from None
        if deferred:
            await run_deferred(deferred)
        return dict(result)

    async def record(self, event: UsageEventIn) -> dict[str, Any]:
        self._needs('record_usage', Role.INGEST)
        try:
            status, row = await lane().run(0, self.rt.ledger.record, event)
        except DomainError as exc:
            raise Refused(str(exc)) from None
        except HTTPException as exc:  # ingest is busy: the agent sends it again (counted once by its event_id)
            raise Refused(str(exc.detail)) from None
        return {'status': status, **row}

    async def forecast(self) -> dict[str, Any]:
        self._needs('get_forecast', Role.READ)
        return dict(await self._off_loop(self.rt.read, budget_forecast, self.rt.settings.budget))

    async def optimize(self, agent_id: str | None, period: Period) -> dict[str, Any]:
        self._needs('suggest_cheaper_model', Role.READ)
        settings = self.rt.settings
        span = resolve_range(period, None, None, settings.zone)
        return dict(await self._off_loop(self.rt.read, optimize, self.rt.pricer, span, settings.zone,
                                         settings.substitutes, agent_id))

    def _needs(self, tool: str, *roles: Role) -> None:
        """Refuse, and count the refusal as the REST API counts its 403s (sync status, dashboard)."""
        if any(self.actor.may(role) for role in roles):
            return
        message = f'{tool} needs the {" or ".join(roles)} role; the token has {self.actor.role}'
        self.rt.refusals.refused(self.user_agent, f'MCP {tool}', 403, message)
        raise Refused(message)

    @staticmethod
    async def _off_loop(job: Callable[..., T], *args: Any) -> T:
        try:
            return await run_in_threadpool(job, *args)
        except DomainError as exc:
            raise Refused(str(exc)) from None
