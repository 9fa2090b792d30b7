"""Pulled spend: each source's sync status, and "sync now"."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from app.api.deps import WRITE, ReadConn, RuntimeDep
from services.sources.sync import ALL_SOURCES, UnknownSource, sync_status

router = APIRouter(prefix='/sync', tags=['sync'])


@router.get('/status')
def status(conn: ReadConn, rt: RuntimeDep) -> dict[str, Any]:
    """Per source: configured or not, the last run, the last success and the last error (never a key)."""
    return {'sources': sync_status(conn, rt.settings.sources.enabled())}


@router.post('/{source}', dependencies=WRITE)
async def sync_now(source: str, rt: RuntimeDep) -> dict[str, Any]:
    """Pull one source now (`all` for every configured one) and answer with the runs."""
    names = tuple(rt.sync.pullers) if source == 'all' else (source,)
    if source != 'all' and source not in ALL_SOURCES:
        raise HTTPException(404, f'unknown source {source!r}: one of {", ".join(ALL_SOURCES)} or all')
    try:
        runs = [await rt.sync.run(name) for name in names]
    except UnknownSource as exc:
        raise HTTPException(409, str(exc)) from None
    return {'runs': runs}
