"""`--db`: a CLI command carried out on the database itself, through the same commands and read models the server
uses, answering in the API's JSON shapes. Loaded only for --db (app/cli/backends.py `direct`)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, cast

from app.cli.backends import BREAKDOWNS, CLI_ACTOR, CliError
from app.cli.output import note
from services.core.db import sqlite_file
from services.core.money import usd_to_micros
from services.core.periods import PeriodName
from services.core.settings import LimitAction, load_settings


class DirectBackend:
    """Uses the commands and read models on the database itself: no server needed. What it changes is announced
    like any change (the other instances on the same PostgreSQL hear of it before the command exits)."""

    def __init__(self, database_url: str | None, creates: bool = True) -> None:
        """On `database_url`, or the configured database when None. A SQLite file that does not exist yet is
        created only by a command that `creates` (said on stderr unless --db named it), else refused."""
        from app import runtime

        self._runtime = runtime
        self._owns_runtime = runtime.running() is None  # in the server's own process (tests) it is the server's
        settings = load_settings().with_overrides(database_url=database_url)
        file = sqlite_file(settings.database_url)
        if self._owns_runtime and file is not None and not file.exists():
            if not creates:
                raise CliError(f'no database at {file}' + ('' if database_url else ': pass --db, set '
                               'SPENDGAUGE_DATABASE_URL, or run this in the folder where `spendgauge serve` runs'))
            if not database_url:
                note(f'creating the database {file} (SPENDGAUGE_DATABASE_URL or --db choose another)')
        self.rt = runtime.start(settings)

    def close(self) -> None:
        if self._owns_runtime:
            self._runtime.stop()

    def _read(self, query: Any, *args: Any) -> Any:
        return self.rt.read(query, *args)

    def record(self, event: dict[str, Any]) -> dict[str, Any]:
        from services.usage.ledger import EventRejected

        try:
            status, row = self.rt.ledger.record(event)
        except EventRejected as exc:
            raise CliError(f'rejected: {exc}') from None
        return {'status': status, **row}

    def summary(self, period: str) -> dict[str, Any]:
        from services.spend import budget

        return self._read(budget.period_summary, self.rt.settings.budget, period)

    def breakdown(self, by: str, period: str) -> dict[str, Any]:
        from services.spend import budget

        span = budget.resolve_range(period, None, None, self.rt.settings.zone)
        return self._read(budget.spend_breakdown, BREAKDOWNS[by], span)

    def usage(self, params: dict[str, str]) -> dict[str, Any]:
        from services.usage.queries import list_usage

        return dict(self._read(list_usage, self._usage_query(params)))

    def export_usage(self, params: dict[str, str], fmt: str, limit: int) -> Iterator[str]:
        from services.usage.queries import export_usage, list_usage

        return export_usage(lambda query: self._read(list_usage, query), self._usage_query(params), fmt, limit)

    def _usage_query(self, params: dict[str, str]) -> Any:
        from services.usage.queries import usage_query_from

        return usage_query_from(params, self.rt.settings.zone)

    def set_limit(self, period: PeriodName, usd: Decimal | None, action: str | None) -> dict[str, Any]:
        limits = self.rt.commands.limits
        if usd is None:
            return dict(limits.remove(CLI_ACTOR, period))
        return dict(limits.set(CLI_ACTOR, period, usd_to_micros(usd), cast(LimitAction | None, action)))

    def sync(self, source: str) -> dict[str, Any]:
        async def run() -> list[Any]:
            try:
                return await self.rt.commands.sync.now(CLI_ACTOR, source)
            finally:
                if self._owns_runtime:  # the pullers' HTTP clients belong to this event loop
                    await self.rt.sync.aclose()
        return {'runs': asyncio.run(run())}

    def policies(self) -> list[dict[str, Any]]:
        from services.budget import policies

        return [p.as_dict() for p in self._read(policies.list_policies)]

    def eco(self) -> dict[str, Any]:
        from services.budget import eco

        return dict(self._read(eco.get_eco))

    def set_eco(self, on: bool, reason: str) -> dict[str, Any]:
        return dict(self.rt.commands.eco.switch(CLI_ACTOR, on, reason))

    def set_paused(self, agent_id: str, paused: bool) -> dict[str, Any]:
        agents = self.rt.commands.agents
        return dict((agents.pause if paused else agents.resume)(CLI_ACTOR, agent_id, 'cli'))

    def alerts(self, status: str) -> list[dict[str, Any]]:
        from services.alerting import alerts

        return [dict(a) for a in self._read(alerts.list_alerts, status)]

    def acknowledge(self, alert_id: int, by: str) -> dict[str, Any]:
        return dict(self.rt.commands.alerts.acknowledge(CLI_ACTOR, alert_id, by))

    def resolve(self, alert_id: int) -> dict[str, Any]:
        return dict(self.rt.commands.alerts.resolve(CLI_ACTOR, alert_id))

    def thresholds(self) -> dict[str, Any]:
        from services.budget import thresholds

        return self._read(thresholds.get_thresholds).as_dict()

    def set_thresholds(self, session_usd: Decimal | None, day_usd: Decimal | None, pause: bool) -> dict[str, Any]:
        return dict(self.rt.commands.policies.set_thresholds(CLI_ACTOR, session_usd, day_usd, pause).as_dict())

    def prune(self, older_than_days: int, dry_run: bool) -> dict[str, Any]:
        return dict(self.rt.commands.usage.prune(CLI_ACTOR, older_than_days, dry_run))

    def update_prices(self, url: str | None) -> dict[str, Any]:
        return dict(self.rt.commands.prices.update(CLI_ACTOR, url or self.rt.settings.price_data_url or None))

    def recalculate_prices(self, start: str, end: str | None, dry_run: bool) -> dict[str, Any]:
        return dict(self.rt.commands.prices.recalculate(CLI_ACTOR, start, end, dry_run))

    def price_audits(self, limit: int) -> list[dict[str, Any]]:
        from services.usage import repricing

        return [dict(a) for a in self._read(repricing.list_audits, limit)]

    def audit(self, params: dict[str, str]) -> dict[str, Any]:
        from services.audit.queries import audit_query_from, list_audit

        return dict(self._read(list_audit, CLI_ACTOR, audit_query_from(params)))

    def model_price(self, model: str, provider: str | None) -> dict[str, Any]:
        from services.usage import price_card

        return dict(self._read(price_card.model_card, self.rt.pricer, model, provider))

    def models_in_use_prices(self) -> dict[str, Any]:
        from services.usage import price_card

        return dict(self._read(price_card.models_in_use, self.rt.pricer))

    def optimize(self, params: dict[str, str]) -> dict[str, Any]:
        from services.insights.optimize import optimize
        from services.spend import budget

        settings = self.rt.settings
        span = budget.resolve_range(params.get('period'), params.get('from'), params.get('to'), settings.zone)
        return dict(self._read(optimize, self.rt.pricer, span, settings.zone, settings.substitutes,
                               params.get('agent_id')))

    def _digest_day(self, day: str | None) -> Any:
        """The day, checked (a bad one is Invalid: bad usage, as app/cli/main.py reports a refusal)."""
        from datetime import UTC, datetime

        from services.insights.digest import parse_day

        return parse_day(day, datetime.now(UTC), self.rt.settings.zone)

    def digest(self, day: str | None, fmt: str) -> str:
        import json

        from services.insights.digest_render import digest_html, digest_text

        found = self.rt.commands.digest.build(self._digest_day(day))
        return json.dumps(found, indent=2) if fmt == 'json' else digest_html(found) if fmt == 'html' \
            else digest_text(found)

    def send_digest(self, day: str | None) -> list[dict[str, Any]]:
        """Queue the deliveries, then attempt each here with a notifier of this process (what fails stays pending:
        a server on the same database retries it)."""
        from services.alerting.notify import Notifier, get_deliveries
        from services.core.scrub import secrets_of

        rt = self.rt
        ids = [row['id'] for row in rt.commands.digest.send_now(CLI_ACTOR, self._digest_day(day))]

        async def attempt() -> None:
            logging.getLogger('services.alerting.notify').setLevel(logging.ERROR)  # stdout reports each outcome
            notifier = Notifier(rt.engine, rt.settings.notify, rt.hub, rt.settings.budget,
                                secrets=secrets_of(rt.settings))
            notifier.start()
            try:
                await notifier.attempt_all(ids)
            finally:
                await notifier.stop()
        asyncio.run(attempt())
        return [dict(row) for row in rt.read(get_deliveries, ids)]

    def report(self, kind: str, params: dict[str, str], fmt: str) -> str:
        from services.insights import report_formats, reports

        report = self._read(reports.build_report, self.rt.settings.budget, kind, params.get('period'),
                            params.get('from'), params.get('to'), params.get('group_by'))
        text = report_formats.render(report, fmt)
        return text if text.endswith('\n') else text + '\n'
