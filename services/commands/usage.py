"""Pruning old usage events (retention): the raw events go, every total stays (it comes from the rollups)."""
from __future__ import annotations

import logging
from datetime import datetime

from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.core.errors import Unavailable
from services.live.topics import EventsPruned
from services.spend.day_zone import day_zone
from services.usage import retention
from services.usage.retention import PruneOut

log = logging.getLogger(__name__)


class UsageCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx

    def prune(self, actor: Actor, older_than_days: int, dry_run: bool = False,
              now: datetime | None = None) -> PruneOut:
        """Delete the usage events older than `older_than_days` days, rounded down to a local midnight of the daily
        rollups' zone (whole days go). Totals, charts, reports and budget counters are unchanged; the usage listing
        says that events before the watermark were pruned. `dry_run`: only count them."""
        require(actor, Role.ADMIN, 'pruning usage events')
        retention.check_days(older_than_days)
        with self.ctx.engine.connect() as conn:
            cutoff = retention.cutoff(conn, older_than_days, now)
            zone = day_zone(conn).key
            count = retention.count_prunable(conn, cutoff) if dry_run else 0
        if not dry_run:
            if self.ctx.ledger is None:
                raise Unavailable('events cannot be pruned here: no ledger is running')
            cutoff, count = self.ctx.ledger.prune_before(cutoff)
            if count:  # deleted chunk by chunk (the ledger's transactions): the trail row once they are gone
                self.ctx.audit(actor, 'usage.prune', f'events before {cutoff.isoformat()}',
                               {'events': count}, {'events': 0, 'cutoff': cutoff.isoformat()})
                log.info('pruned %d usage events before %s (%s)', count, cutoff.isoformat(), actor.name)
        with self.ctx.engine.connect() as conn:
            watermark = retention.pruned_before(conn)
        if count and not dry_run:
            self.ctx.publish(EventsPruned(cutoff, count))
        return {'older_than_days': older_than_days, 'cutoff': cutoff.isoformat(), 'day_zone': zone,
                'dry_run': dry_run, 'events': count, 'pruned_before': retention.iso(watermark)}
