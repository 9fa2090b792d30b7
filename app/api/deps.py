"""Dependencies shared by the routes: the runtime, read connections, and who is calling with which role.

Once any token or user exists (or SPENDGAUGE_API_TOKENS is set), every route but /health needs
`Authorization: Bearer <token>` of a role that may call it: `read` for what GET routes show, `ingest` to record usage
and ask /check, `admin` for every change. With none (a loopback server, see app/security/exposure.py) the caller is
trusted. The commands check the role again where the change is carried out. Each refusal (401, 403) is counted in
memory per client and route (services/accounts/refusals.py) for the sync status and the dashboard.

The runtime, the caller and the role are `async` dependencies: answered from memory on the event loop, so a route
that needs no database (`POST /check`) makes no hop to a worker thread. The directory's backstop reload (every 30 s)
is the one database read on the way; it runs on a worker thread before the lookup.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Path, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from app import runtime as runtime_module
from app.runtime import Runtime
from services.core.access import Actor, Role


async def get_runtime() -> Runtime:
    return runtime_module.current()  # started on start-up: in memory


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def read_conn(rt: RuntimeDep) -> Iterator[Connection]:
    with rt.engine.connect() as conn:
        yield conn


ReadConn = Annotated[Connection, Depends(read_conn)]
API_PREFIX = '/api/v1'  # where app/api/__init__.py mounts the routes
TRUSTED = Actor('local', Role.ADMIN)  # no token and no user exists: a loopback server for one developer


async def authenticate(rt: RuntimeDep, request: Request,
                       authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> Actor:
    directory = rt.accounts
    if directory.due:  # the backstop reload reads the database: off the event loop
        await run_in_threadpool(directory.refresh)
    if not directory.secured:
        return TRUSTED
    scheme, _, token = (authorization or '').partition(' ')
    if scheme.lower() != 'bearer' or not token.strip():
        raise refusal(rt, request, HTTPException(401, 'Authorization: Bearer <token> required',
                                                 headers={'WWW-Authenticate': 'Bearer'}))
    actor = directory.token_actor(token.strip())
    if actor is None:
        raise refusal(rt, request, HTTPException(401, 'the bearer token is not valid (revoked, or never issued)',
                                                 headers={'WWW-Authenticate': 'Bearer error="invalid_token"'}))
    return actor


def requires(*roles: Role) -> Callable[..., Awaitable[Actor]]:
    """A dependency: the caller, who must hold one of these roles (admin holds them all)."""
    async def check(actor: Annotated[Actor, Depends(authenticate)], rt: RuntimeDep, request: Request) -> Actor:
        if not any(actor.may(role) for role in roles):
            raise refusal(rt, request, HTTPException(
                403, f'this needs the {" or ".join(roles)} role; the token has {actor.role}'))
        rt.refusals.accepted(request.headers.get('user-agent'))
        return actor
    check.__name__ = f'requires_{"_or_".join(roles)}'
    return check


def refusal(rt: Runtime, request: Request, error: HTTPException) -> HTTPException:
    """Count the refused request (services/accounts/refusals.py: sync status, dashboard) and hand back the error."""
    route = route_template(request.scope)
    where = f'{request.method} {route}' if route else f'{request.method} (no route)'
    rt.refusals.refused(request.headers.get('user-agent'), where, error.status_code, str(error.detail))
    return error


def route_template(scope: Mapping[str, Any]) -> str | None:
    """The template of the route that took the request, e.g. /api/v1/agents/{agent_id} (never the raw path)."""
    template = getattr(scope.get('route'), 'path_format', None)
    if not isinstance(template, str):
        return None
    if scope['path'].startswith(f'{API_PREFIX}/') and not template.startswith(f'{API_PREFIX}/'):
        return API_PREFIX + template  # the routes of the modules under /api/v1 carry their path without it
    return template


Reader = Annotated[Actor, Depends(requires(Role.READ))]
Ingester = Annotated[Actor, Depends(requires(Role.INGEST))]
Admin = Annotated[Actor, Depends(requires(Role.ADMIN))]
READ: list[Any] = [Depends(requires(Role.READ))]
INGEST: list[Any] = [Depends(requires(Role.INGEST))]
PLAN: list[Any] = [Depends(requires(Role.READ, Role.INGEST))]  # reads only, asked by agents too
ADMIN: list[Any] = [Depends(requires(Role.ADMIN))]

# A row id in a path: larger ids cannot exist (BIGINT), and passing them on would overflow the database driver.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description='row id')]
