"""Pulling spend now, from one source or all configured ones (the scheduler pulls on its own clock)."""
from __future__ import annotations

import asyncio

from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.core.errors import NotFound, Unavailable
from services.sources.sync import ALL_SOURCES, SyncRunOut


class SyncCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx

    async def now(self, actor: Actor, source: str = 'all') -> list[SyncRunOut]:
        """The runs, each ok or failed (a failed pull is recorded, not raised). `all` runs every configured source;
        a known source that is not configured is a Conflict (UnknownSource)."""
        require(actor, Role.ADMIN, 'pulling spend')
        sync = self.ctx.sync
        if sync is None:
            raise Unavailable('no spend sources are running here')
        if source == 'all':
            runs = await sync.run_many(tuple(sync.pullers))
        elif source not in ALL_SOURCES:
            raise NotFound(f'unknown source {source!r}: one of {", ".join(ALL_SOURCES)} or all')
        else:
            runs = [await sync.run(source)]
        # each run committed on its own (the sync service): the trail row once they are over, off the event loop
        after = {'runs': [{'id': r['id'], 'source': r['source'], 'status': r['status']} for r in runs]}
        await asyncio.to_thread(self.ctx.audit, actor, 'sync.now', f'source:{source}', None, after)
        return runs
