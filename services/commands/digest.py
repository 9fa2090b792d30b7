"""The daily digest sent: built, rendered once, queued as deliveries (log, the alert webhook or Slack, e-mail), then
announced so the notifier attempts them at once (and retries what fails). The scheduled job sends each local day's
digest once; `send_now` always sends."""
from __future__ import annotations

import logging
from datetime import UTC, date, datetime

from services.alerting.notify import DeliveryOut, digest_queued, get_deliveries, queue_digest
from services.commands.base import CommandContext
from services.core.access import Actor, Role, require
from services.core.periods import as_utc
from services.core.settings import Settings, get_settings
from services.insights.digest import DigestOut, build_digest, checked_digest_day, day_key, default_day
from services.insights.digest_render import digest_payloads
from services.live.topics import DigestQueued
from services.usage.pricing import Pricer

log = logging.getLogger(__name__)


class DigestCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx
        self._pricer: Pricer | None = None

    @property
    def settings(self) -> Settings:
        return self.ctx.settings or get_settings()

    @property
    def pricer(self) -> Pricer:
        if self.ctx.pricer is not None:
            return self.ctx.pricer
        self._pricer = self._pricer or Pricer()
        return self._pricer

    def send_now(self, actor: Actor, day: date | None = None, now: datetime | None = None) -> list[DeliveryOut]:
        """Send the digest of `day` (yesterday by default) now, even if it was sent before; returns its deliveries
        as queued (the notifier attempts them as soon as it hears of them)."""
        require(actor, Role.ADMIN, 'sending the daily digest')
        return self._send(actor, 'digest.send_now', day, now, force=True)

    def send_scheduled(self, actor: Actor, now: datetime | None = None) -> list[DeliveryOut]:
        """The scheduled job: yesterday's digest, unless that day's was queued already (a restart, another
        instance, a send-now); returns the deliveries queued (none when skipped)."""
        require(actor, Role.ADMIN, 'sending the daily digest')
        return self._send(actor, 'digest.send_scheduled', None, now, force=False)

    def build(self, day: date | None = None, now: datetime | None = None) -> DigestOut:
        """The digest itself (the preview: a read, no role of its own beyond the caller's read access)."""
        with self.ctx.engine.connect() as conn:
            return build_digest(conn, self.settings.budget, self.pricer, self.settings.substitutes, day, now)

    def _send(self, actor: Actor, action: str, day: date | None, now: datetime | None,
              force: bool) -> list[DeliveryOut]:
        settings = self.settings
        now = as_utc(now or datetime.now(UTC))
        day = checked_digest_day(day or default_day(now, settings.zone), now, settings.zone)
        key = day_key(day)
        if not force and self._queued(key):
            log.info('daily digest of %s: already queued, not sent again', day)
            return []
        payloads = digest_payloads(self.build(day, now))
        with self.ctx.audited(actor, action, f'digest:{day.isoformat()}') as (conn, entry):
            if not force and digest_queued(conn, key):  # queued while this one was being built
                entry.unchanged()
                return []
            ids = queue_digest(conn, settings.notify, key, payloads, now)
            rows = get_deliveries(conn, ids)
            entry.after = {'deliveries': [{'id': r['id'], 'channel': r['channel']} for r in rows]}
        log.info('daily digest of %s queued for %s', day, ', '.join(r['channel'] for r in rows))
        self.ctx.publish(DigestQueued(day.isoformat(), tuple(ids)))
        return rows

    def _queued(self, key: int) -> bool:
        with self.ctx.engine.connect() as conn:
            return digest_queued(conn, key)
