"""Dependencies shared by the routes: the runtime, database connections and the write-token check."""
from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path
from sqlalchemy import Connection

from app import runtime as runtime_module
from app.runtime import Runtime


def get_runtime() -> Runtime:
    return runtime_module.current()


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def read_conn(rt: RuntimeDep) -> Iterator[Connection]:
    with rt.engine.connect() as conn:
        yield conn


def write_conn(rt: RuntimeDep) -> Iterator[Connection]:
    with rt.engine.begin() as conn:
        yield conn


ReadConn = Annotated[Connection, Depends(read_conn)]
WriteConn = Annotated[Connection, Depends(write_conn)]


def require_token(rt: RuntimeDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """Write endpoints need `Authorization: Bearer <token>` when API tokens are configured."""
    tokens = rt.settings.api_tokens
    if not tokens:
        return
    scheme, _, token = (authorization or '').partition(' ')
    if scheme.lower() != 'bearer' or not token:
        raise HTTPException(401, 'Authorization: Bearer <token> required for this endpoint',
                            headers={'WWW-Authenticate': 'Bearer'})
    if not any(hmac.compare_digest(token.strip().encode(), t.encode()) for t in tokens):
        raise HTTPException(403, 'the bearer token is not valid', headers={'WWW-Authenticate': 'Bearer'})


WRITE = [Depends(require_token)]

# A row id in a path: larger ids cannot exist (BIGINT), and passing them on would overflow the database driver.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description='row id')]
