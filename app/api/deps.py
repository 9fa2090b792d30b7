"""Dependencies shared by the routes: the runtime, read connections, and who is calling (the write-token check)."""
from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path
from sqlalchemy import Connection

from app import runtime as runtime_module
from app.runtime import Runtime
from services.core.access import Actor, Role


def get_runtime() -> Runtime:
    return runtime_module.current()


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def read_conn(rt: RuntimeDep) -> Iterator[Connection]:
    with rt.engine.connect() as conn:
        yield conn


ReadConn = Annotated[Connection, Depends(read_conn)]


def authenticate(rt: RuntimeDep, authorization: Annotated[str | None, Header()] = None) -> Actor:
    """Write endpoints need `Authorization: Bearer <token>` when API tokens are configured; without any (loopback
    only, see app/server.py) the caller is trusted."""
    tokens = rt.settings.api_tokens
    if not tokens:
        return Actor('api', Role.ADMIN)
    scheme, _, token = (authorization or '').partition(' ')
    if scheme.lower() != 'bearer' or not token:
        raise HTTPException(401, 'Authorization: Bearer <token> required for this endpoint',
                            headers={'WWW-Authenticate': 'Bearer'})
    if not any(hmac.compare_digest(token.strip().encode(), t.encode()) for t in tokens):
        raise HTTPException(403, 'the bearer token is not valid', headers={'WWW-Authenticate': 'Bearer'})
    return Actor('api token', Role.ADMIN)


Caller = Annotated[Actor, Depends(authenticate)]
WRITE = [Depends(authenticate)]

# A row id in a path: larger ids cannot exist (BIGINT), and passing them on would overflow the database driver.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description='row id')]
