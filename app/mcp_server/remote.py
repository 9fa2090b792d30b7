"""The MCP tools against a running server's REST API (`spendgauge mcp`, stdio): the budget counters live in the
server process, so every tool is one REST call with the token the CLI uses, and the server checks its role."""
from __future__ import annotations

from typing import Any

import httpx

from app.api.routes.check import CheckIn
from app.mcp_server.backend import Period, Refused
from services.usage.events import UsageEventIn

TIMEOUT = httpx.Timeout(60, connect=5)


class RemoteBackend:
    def __init__(self, url: str, token: str | None, client: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip('/')
        headers = {'Authorization': f'Bearer {token}'} if token else {}
        self.client = client or httpx.AsyncClient(base_url=self.url + '/api/v1', headers=headers, timeout=TIMEOUT)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def remaining(self, agent_id: str | None, session_id: str | None, project: str | None) -> dict[str, Any]:
        scope = {'agent_id': agent_id, 'session_id': session_id, 'project': project}
        return await self._call('GET', '/budget/remaining', params={k: v for k, v in scope.items() if v is not None})

    async def check(self, call: CheckIn) -> dict[str, Any]:
        return await self._call('POST', '/check', json=call.model_dump(mode='json', exclude_none=True))

    async def record(self, event: UsageEventIn) -> dict[str, Any]:
        return await self._call('POST', '/usage', json=event.model_dump(mode='json', exclude_none=True))

    async def forecast(self) -> dict[str, Any]:
        return await self._call('GET', '/budget/forecast')

    async def optimize(self, agent_id: str | None, period: Period) -> dict[str, Any]:
        return await self._call('GET', '/optimize', params={'period': period} | ({'agent_id': agent_id} if agent_id
                                                                                 else {}))

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Refused(f'cannot reach SpendGauge at {self.url} ({type(exc).__name__}): start it with `spendgauge '
                          'serve`, or point SPENDGAUGE_URL at it') from None
        try:
            body = response.json()
        except ValueError:
            body = None
        detail = body.get('detail') if isinstance(body, dict) else None
        if response.status_code >= 400:
            raise Refused(f'server answered {response.status_code}: {detail or "not a SpendGauge API answer"}')
        if not isinstance(body, dict):
            raise Refused(f'{self.url} did not answer like a SpendGauge server (is SPENDGAUGE_URL right?)')
        return body
