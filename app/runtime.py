"""The process-wide services: settings, database engine, pricer, ledger, spend sources, the budget checker and the
commands that change state. Built once on start-up."""
from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine

from services.accounts.directory import Directory
from services.accounts.refusals import RefusalLog
from services.audit.journal import Journal
from services.budget import limits, policies
from services.budget.checker import Checker
from services.commands import CommandContext, Commands
from services.core.db import create_db_engine, describe, sqlite_file, upgrade
from services.core.errors import Invalid
from services.core.scrub import secrets_of
from services.core.settings import Settings, SettingsError, get_settings
from services.dashboard import ALL_PARTS, DashboardConfig, DashboardSnapshot, Part, load_dashboard
from services.live.cluster import Bridge, Leadership
from services.live.hub import EventHub, hub
from services.live.metrics import Metrics
from services.live.topics import LiveEvent, UsageChanged
from services.sources.registry import build_pullers
from services.sources.sync import SyncService
from services.spend.day_zone import rekey_days
from services.spend.kept import kept
from services.usage import price_data, price_overrides
from services.usage.ledger import Ledger
from services.usage.pricing import BUNDLED, Pricer

log = logging.getLogger(__name__)
P = ParamSpec('P')
T = TypeVar('T')


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    pricer: Pricer
    ledger: Ledger
    hub: EventHub
    sync: SyncService
    commands: Commands
    accounts: Directory
    refusals: RefusalLog
    checker: Checker | None = None
    leadership: Leadership | None = None
    bridge: Bridge | None = None
    metrics: Metrics = field(default_factory=Metrics)  # GET /metrics: this runtime's registry
    unfollow_prices: Callable[[], None] | None = None

    def load_dashboard(self, previous: DashboardSnapshot | None = None,
                       parts: Collection[Part] = ALL_PARTS) -> DashboardSnapshot:
        """Everything, or the `parts` of `previous` (app/feed.py)."""
        sources = self.settings.sources
        config = DashboardConfig(self.settings.budget, tuple(self.sync.pullers),
                                 sources.reconciliation_tolerance)
        with self.engine.connect() as conn:
            return load_dashboard(conn, config, refused=self.refusals.snapshot(), previous=previous, parts=parts)

    def policy_spend(self, policy_id: int) -> int:
        """A policy's spend in its current period, from the checker's counters (its costliest scope key: one for
        a policy of one value); 0 before the checker runs."""
        if self.checker is None:
            return 0
        return max(self.checker.current_spend(policy_id).values(), default=0)

    def read(self, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a read model on a connection of its own (pages call this in a worker thread)."""
        with self.engine.connect() as conn:
            return query(conn, *args, **kwargs)

    def reload_prices(self) -> None:
        """The overrides, and the genai-prices data that `prices update` stored (parsed only when it is not the
        data the pricer has already; the bundled data when none is stored, or when what is stored cannot be read)."""
        with self.engine.connect() as conn:
            self.pricer.set_overrides(price_overrides.load(conn))
            sha256 = price_data.stored_sha256(conn)
            wanted = BUNDLED if sha256 is None else price_data.label_of(sha256)
            if wanted == self.pricer.data_label:
                return
            try:
                loaded = price_data.load(conn)
            except ValueError as exc:
                log.error('the stored price data cannot be read (%s): pricing with the data %s', exc, BUNDLED)
                loaded = None
        self.pricer.use_data(loaded[1] if loaded else None)
        log.info('pricing with the genai-prices data %s', self.pricer.data_label)

    def follow_prices(self, event: LiveEvent) -> None:
        """Another instance changed something (a price update or override among it may be): load what is stored."""
        if isinstance(event, UsageChanged) and event.remote:
            self.reload_prices()


_current: Runtime | None = None
GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Freeze the objects that live as long as the process (NiceGUI, SQLAlchemy, the price data) and collect the
    young generation less often: ingest allocates many short-lived dicts, and with the default threshold the cyclic
    collector took a quarter of the ingest time."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def check_substitutes(settings: Settings) -> None:
    """Every SPENDGAUGE_OPTIMIZE_SUBSTITUTES model must be one genai-prices knows (checked before the server
    listens, when no database is open yet)."""
    pricer = Pricer()
    unknown = [f'{provider}:{model}' for provider, model in settings.substitutes
               if pricer.catalogue_entry(provider, model) is None]
    if unknown:
        raise SettingsError(f'SPENDGAUGE_OPTIMIZE_SUBSTITUTES: no price known for {", ".join(unknown)} (give a '
                            'provider:model that genai-prices lists)')


def start(settings: Settings | None = None) -> Runtime:
    """Open the database, migrate it to the newest schema and build the services (idempotent)."""
    global _current
    if _current is not None:
        return _current
    settings = settings or get_settings()
    file = sqlite_file(settings.database_url)
    new = file is not None and not file.exists()
    engine = create_db_engine(settings.database_url)
    upgrade(engine)
    with engine.begin() as conn:
        if rekey_days(conn, settings.zone):
            log.info('daily rollups re-keyed to the days of %s', settings.zone.key)
    pricer = Pricer()
    sources = settings.sources
    sync = SyncService(engine, build_pullers(sources), hub, sources.lookback_days, sources.reconciliation_tolerance,
                       secrets_of(settings))
    ledger = Ledger(engine, pricer, hub)
    ledger.journal = Journal(settings.audit_log, secrets_of(settings)) if settings.audit_log else None
    context = CommandContext(engine, hub, pricer=pricer, ledger=ledger, sync=sync, settings=settings,
                             journal=ledger.journal)
    commands = Commands(context)
    if settings.admin_password:
        try:
            commands.accounts.ensure_admin(settings.admin_user, settings.admin_password)
        except Invalid as exc:
            raise SettingsError(f'SPENDGAUGE_ADMIN_PASSWORD / SPENDGAUGE_ADMIN_USER: {exc}') from None
    accounts = Directory(engine, settings.api_tokens, hub)
    runtime = Runtime(settings, engine, pricer, ledger, hub, sync, commands, accounts, RefusalLog(hub))
    runtime.reload_prices()
    check_substitutes(settings)
    runtime.unfollow_prices = hub.subscribe(runtime.follow_prices)
    kept.follow(hub)  # subscribed first: it drops changed intervals before any other listener reads them
    preload_policies(engine, settings)
    runtime.checker = context.counters = Checker(engine, hub, settings.zone, runtime.commands,
                                                 timedelta(minutes=settings.reservation_minutes))
    runtime.checker.start()
    runtime.leadership = Leadership(engine)
    runtime.bridge = Bridge(engine, hub)
    runtime.bridge.start()
    runtime.metrics.follow(hub, sync.pullers)
    _current = runtime
    log.info('%s: %s', 'created the database' if new else 'database ready', describe(settings.database_url))
    return runtime


def preload_policies(engine: Engine, settings: Settings) -> None:
    """Re-sync the policies of SPENDGAUGE_POLICIES_FILE and the limits from the environment."""
    try:
        from_file = policies.load_file(settings.policies_file) if settings.policies_file else []
    except (OSError, ValueError) as exc:
        raise SettingsError(f'policies: {exc}') from None
    with engine.begin() as conn:
        policies.sync_origin(conn, 'file', from_file)
        limits.sync_environment(conn, settings.env_limits, settings.limit_action)


def running() -> Runtime | None:
    """The runtime if it has started."""
    return _current


def current() -> Runtime:
    if _current is None:
        return start()
    return _current


def stop() -> None:
    global _current
    if _current is not None:
        if _current.unfollow_prices is not None:
            _current.unfollow_prices()
        if _current.checker is not None:
            _current.checker.stop()
        if _current.bridge is not None:
            _current.bridge.stop()
        if _current.leadership is not None:
            _current.leadership.release()
        kept.stop()
        _current.metrics.close()
        _current.accounts.close()
        _current.ledger.close()
        if _current.ledger.journal is not None:
            _current.ledger.journal.close()
        _current.engine.dispose()
        _current = None
