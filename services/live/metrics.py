"""Prometheus metrics of one runtime, served by `GET /metrics` (app/api/metrics.py) in the text format.

Each runtime owns its `CollectorRegistry` (never prometheus-client's global one), so several runtimes in one process
(tests) share no state. What is counted comes from the hub (stored usage, finished syncs, raised alerts) and from
three hooks: the HTTP middleware, `POST /check` and the dashboard feed's loader. Updates are cheap: no database
query, and a batch of events is folded into one increment per label set. A scrape reads these counters only.

Counters count from the start of the process, as Prometheus expects: its `rate()` and `increase()` handle the reset
at a restart. The spend counters follow the rows the ledger publishes as it stores them (what a call cost when it was
recorded); a later repricing of unpriced events or a removal of events is not taken back (a counter never goes down).
Budget figures themselves come from the API (`/api/v1/budget/...`), which reads the ledger.
"""
from __future__ import annotations

import threading
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram, PlatformCollector, ProcessCollector

from services.live.hub import EventHub
from services.live.topics import AlertRaised, LiveEvent, SpendRow, SyncFinished, UsageChanged

T = TypeVar('T')
P = ParamSpec('P')

# Agents and providers are names that callers choose: each gets a label of its own up to these many (the first seen
# since the process started), later ones share OTHER, so that a scrape stays small whatever callers send.
AGENT_LABELS = 50
PROVIDER_LABELS = 50
OTHER = '_other'
NO_AGENT = '_none'  # events recorded without an agent_id
DECISIONS = ('allow', 'warn', 'throttle', 'block')
HTTP_METHODS = frozenset({'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'})  # any other: 'other'
UNMATCHED = '(unmatched)'  # a request no route took (a 404 of the pages, or refused before routing)

CHECK_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RELOAD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class BoundedLabels:
    """At most `limit` distinct label values: the first ones seen keep their own, every later one is OTHER."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if value in self._seen or len(self._seen) < self.limit:
                self._seen.add(value)
                return value
        return OTHER


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.events = Counter(
            'spendgauge_usage_events', 'Usage events stored by the ledger (a repeated event_id is counted once), by '
            'source and channel', ('source', 'channel'), registry=registry)
        self.provider_spend = Counter(
            'spendgauge_spend_micros', 'Cost of the usage events stored, in micro-USD (1 USD = 1,000,000), by '
            f'provider (the first {PROVIDER_LABELS} seen since start; later ones share "{OTHER}")', ('provider',),
            registry=registry)
        self.agent_spend = Counter(
            'spendgauge_agent_spend_micros', 'Cost of the usage events stored, in micro-USD, by agent (the first '
            f'{AGENT_LABELS} seen since start; later ones share "{OTHER}"; "{NO_AGENT}": no agent_id)', ('agent',),
            registry=registry)
        self.checks = Counter('spendgauge_checks', 'Budget checks answered (POST /api/v1/check), by decision',
                              ('decision',), registry=registry)
        self.check_seconds = Histogram(
            'spendgauge_check_duration_seconds', 'Time the budget checker took to decide a check (in memory; the HTTP '
            'request around it is in spendgauge_http_request_duration_seconds)', buckets=CHECK_BUCKETS,
            registry=registry)
        self.sync_runs = Counter('spendgauge_sync_runs', 'Pulls from a spend source that finished, failed ones '
                                 'included, by source', ('source',), registry=registry)
        self.sync_failures = Counter('spendgauge_sync_failures', 'Pulls from a spend source that failed, by source',
                                     ('source',), registry=registry)
        self.alerts = Counter('spendgauge_alerts_raised', 'Alerts opened (a repeat of an open alert is not counted), '
                              'by type and severity', ('type', 'severity'), registry=registry)
        self.reload_seconds = Histogram(
            'spendgauge_dashboard_reload_duration_seconds', 'Time the shared dashboard feed took to load the '
            "dashboard's data, per reload (its _count is the number of reloads, failed ones included)",
            buckets=RELOAD_BUCKETS, registry=registry)
        self.reload_failures = Counter('spendgauge_dashboard_reload_failures', 'Dashboard reloads that failed',
                                       registry=registry)
        self.http_seconds = Histogram(
            'spendgauge_http_request_duration_seconds', 'HTTP requests served, by method, route template (never the '
            f'raw path; "{UNMATCHED}" when no route took the request) and status class (2xx, 4xx, ...)',
            ('method', 'route', 'status'), buckets=HTTP_BUCKETS, registry=registry)
        self._agents = BoundedLabels(AGENT_LABELS)
        self._providers = BoundedLabels(PROVIDER_LABELS)
        self._decisions = {decision: self.checks.labels(decision) for decision in DECISIONS}
        self._http: dict[tuple[str, str, str], Histogram] = {}
        self._unsubscribe: Callable[[], None] | None = None

    # --- the hub ------------------------------------------------------------------------------------------------

    def follow(self, hub: EventHub, sources: Iterable[str] = ()) -> None:
        """Count what the hub announces from now on; the configured `sources` show their sync counters at 0."""
        for source in sources:
            self.sync_runs.labels(source)
            self.sync_failures.labels(source)
        if self._unsubscribe is None:
            self._unsubscribe = hub.subscribe(self._on_event)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: LiveEvent) -> None:  # the publishing thread: the ledger's, under its write gate
        if isinstance(event, UsageChanged):
            if event.rows:  # None: a correction or another instance's writes, counted where they were stored
                self.ingested(event.rows)
        elif isinstance(event, SyncFinished):
            self.sync_runs.labels(event.source).inc()
            if event.status != 'ok':
                self.sync_failures.labels(event.source).inc()
        elif isinstance(event, AlertRaised):
            self.alerts.labels(str(event.alert['type']), str(event.alert['severity'])).inc()

    def ingested(self, rows: Iterable[SpendRow]) -> None:
        """Fold stored events into the counters: one increment per label set, whatever the size of the batch (about
        a microsecond an event)."""
        rows = tuple(rows)
        events = Tally((row.source, row.channel) for row in rows)
        by_provider: defaultdict[str, int] = defaultdict(int)
        by_agent: defaultdict[str | None, int] = defaultdict(int)
        for row in rows:
            cost = row.cost_micros
            by_provider[row.provider] += cost
            by_agent[row.agent_id] += cost
        for (source, channel), count in events.items():
            self.events.labels(source or 'unknown', channel or 'unknown').inc(count)
        providers: defaultdict[str, int] = defaultdict(int)  # the bounded labels, in the order first seen
        for provider, micros in by_provider.items():
            providers[self._providers(provider)] += micros
        agents: defaultdict[str, int] = defaultdict(int)
        for agent, micros in by_agent.items():
            agents[self._agents(agent) if agent else NO_AGENT] += micros
        for provider, micros in providers.items():
            self.provider_spend.labels(provider).inc(max(micros, 0))
        for agent, micros in agents.items():
            self.agent_spend.labels(agent).inc(max(micros, 0))

    # --- hooks --------------------------------------------------------------------------------------------------

    def checked(self, decision: str, seconds: float) -> None:
        """A budget check answered `decision` after `seconds`."""
        counter = self._decisions.get(decision)
        (counter or self.checks.labels(decision)).inc()
        self.check_seconds.observe(seconds)

    def timed_load(self, load: Callable[P, T]) -> Callable[P, T]:
        """`load` (the dashboard feed's loader), timed and counted on each call."""
        def timed(*args: P.args, **kwargs: P.kwargs) -> T:
            started = perf_counter()
            try:
                return load(*args, **kwargs)
            except Exception:
                self.reload_failures.inc()
                raise
            finally:
                self.reload_seconds.observe(perf_counter() - started)
        return timed

    def request_served(self, method: str, route: str, status: int, seconds: float) -> None:
        """An HTTP request: `route` is its route's template (bounded by the routes there are)."""
        key = (method if method in HTTP_METHODS else 'other', route, f'{status // 100}xx')
        histogram = self._http.get(key)
        if histogram is None:
            histogram = self._http[key] = self.http_seconds.labels(*key)
        histogram.observe(seconds)
