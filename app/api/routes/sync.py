"""Pulled spend: each source's sync status, and "sync now"."""
from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import READ, Admin, ReadConn, RuntimeDep
from app.api.errors import refusals
from services.sources.sync import SyncRuns, SyncStatus, sync_status

router = APIRouter(prefix='/sync', tags=['sync'])


@router.get('/status', dependencies=READ)
def status(conn: ReadConn, rt: RuntimeDep) -> SyncStatus:
    """Per source: configured or not, the last run, the last success and the last error (never a key); and the
    requests this instance refused for their token, per client (LiteLLM callback, SDK, other) and route, with a
    count, the last time and the reason: a callback whose token is wrong shows here, not only in its own log."""
    return {'sources': sync_status(conn, rt.settings.sources.enabled()), 'refused_requests': rt.refusals.snapshot()}


@router.post('/{source}', responses=refusals(e409='The source is not configured',
                                             e503='No spend sources run in this process'))
async def sync_now(source: str, rt: RuntimeDep, actor: Admin) -> SyncRuns:
    """Pull one source now (`all` for every configured one) and answer with the runs; 409 for a source that is
    not configured."""
    return {'runs': await rt.commands.sync.now(actor, source)}
