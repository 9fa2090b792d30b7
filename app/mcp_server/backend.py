"""What the MCP tools ask of SpendGauge, with two homes: the server process itself (local.py) and a running server's
REST API (remote.py). Every answer is the REST API's JSON shape, so both transports answer alike."""
from __future__ import annotations

from typing import Any, Literal, Protocol

from app.api.routes.check import CheckIn
from services.usage.events import UsageEventIn

Period = Literal['day', 'week', 'month']


class Refused(Exception):
    """A call turned down (role, bad input, budget checks not running) or that could not be made: the message is
    what the agent reads as the tool's error."""


class BudgetBackend(Protocol):
    async def remaining(self, agent_id: str | None, session_id: str | None, project: str | None) -> dict[str, Any]:
        """GET /budget/remaining: read or ingest role."""
        ...

    async def check(self, call: CheckIn) -> dict[str, Any]:
        """POST /check: ingest role."""
        ...

    async def record(self, event: UsageEventIn) -> dict[str, Any]:
        """POST /usage: ingest role."""
        ...

    async def forecast(self) -> dict[str, Any]:
        """GET /budget/forecast: read role."""
        ...

    async def optimize(self, agent_id: str | None, period: Period) -> dict[str, Any]:
        """GET /optimize: read role."""
        ...
