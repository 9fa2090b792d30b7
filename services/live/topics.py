"""What the hub carries: one typed event per kind of change, and one registry of who hears which topic.

Every state change publishes exactly one of these after its transaction commits (services/commands, the ledger,
the pullers). Listeners match on the class: the budget checker follows `UsageChanged`, the notifier `AlertRaised`
and `EcoChanged`, the dashboard feed reloads on the topics marked `reloads_dashboard` (the parts of the snapshot
that services/dashboard.py's TOPIC_PARTS names), and the cluster bridge tells the other instances of those marked
`crosses_instances`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, NamedTuple


class Topic(StrEnum):
    USAGE = 'usage'  # the ledger stored, repriced or removed events (or another instance wrote: recount)
    RETENTION = 'retention'  # old events were pruned (every total stays: they come from the rollups)
    SETTINGS = 'settings'  # a run-time setting such as a budget limit
    POLICIES = 'policies'  # budget policies, the Budget settings thresholds among them
    PRICES = 'prices'
    SESSIONS = 'sessions'
    TASKS = 'tasks'
    ECO = 'eco'
    AGENTS = 'agents'  # paused or resumed
    SYNC = 'sync'  # a pull finished
    ALERTS = 'alerts'  # acknowledged, resolved, or counted again
    ALERT_RAISED = 'alert_raised'  # a new alert opened: notify once
    DELIVERIES = 'deliveries'  # a notification was attempted
    DIGEST = 'digest'  # the daily digest's deliveries were queued: attempt them now
    ACCOUNTS = 'accounts'  # a token or user was created, revoked or changed
    REFUSALS = 'refusals'  # requests were refused for their token (services/accounts/refusals.py)


@dataclass(frozen=True)
class Route:
    reloads_dashboard: bool  # the shared dashboard feed reloads (services/dashboard.py's TOPIC_PARTS: which parts)
    crosses_instances: bool  # other instances on the same PostgreSQL hear of it (services/live/cluster.py)


ROUTES: dict[Topic, Route] = {
    Topic.USAGE: Route(reloads_dashboard=True, crosses_instances=True),
    Topic.RETENTION: Route(reloads_dashboard=True, crosses_instances=True),
    Topic.SETTINGS: Route(reloads_dashboard=True, crosses_instances=True),
    Topic.POLICIES: Route(reloads_dashboard=True, crosses_instances=True),
    Topic.PRICES: Route(reloads_dashboard=False, crosses_instances=True),  # a repricing publishes UsageChanged
    Topic.SESSIONS: Route(reloads_dashboard=True, crosses_instances=True),
    Topic.TASKS: Route(reloads_dashboard=True, crosses_instances=True),
    Topic.ECO: Route(reloads_dashboard=True, crosses_instances=True),
    Topic.AGENTS: Route(reloads_dashboard=True, crosses_instances=True),
    Topic.SYNC: Route(reloads_dashboard=True, crosses_instances=True),
    Topic.ALERTS: Route(reloads_dashboard=True, crosses_instances=True),
    Topic.ALERT_RAISED: Route(reloads_dashboard=True, crosses_instances=True),
    Topic.DELIVERIES: Route(reloads_dashboard=True, crosses_instances=False),  # each instance delivers its own
    Topic.DIGEST: Route(reloads_dashboard=False, crosses_instances=False),  # others retry what is left pending
    Topic.ACCOUNTS: Route(reloads_dashboard=False, crosses_instances=True),  # every instance re-reads who may call
    Topic.REFUSALS: Route(reloads_dashboard=True, crosses_instances=False),  # each instance counts its own
}
DASHBOARD_TOPICS = frozenset(t for t, r in ROUTES.items() if r.reloads_dashboard)
BRIDGED_TOPICS = frozenset(t for t, r in ROUTES.items() if r.crosses_instances)


class SpendRow(NamedTuple):
    """What a budget counter needs to know of a stored event."""

    ts: datetime
    cost_micros: int
    agent_id: str | None
    session_id: str | None
    user_id: str | None
    project: str | None
    tags: tuple[str, ...]
    provider: str
    model: str
    event_id: str | None = None  # releases the reservation its check made
    source: str = ''  # api, sdk, litellm_callback, ... (the metrics count events by source and channel)
    channel: str = ''


@dataclass(frozen=True)
class UsageChanged:
    """New events (`rows`), or a change of history that in-memory totals must recount (`rows` is None): repriced or
    removed events, or writes by another instance (`remote`)."""

    topic: ClassVar[Topic] = Topic.USAGE
    rows: tuple[SpendRow, ...] | None
    count: int = 0  # events stored, repriced or removed
    cost_micros: int = 0  # their cost (negative for removed events)
    agents: tuple[str, ...] = ()
    remote: bool = False
    # the new events as stored, (id, row as written): the live API (services/live/stream.py) shows them as the usage
    # API does; handed over as they are, so publishing costs nothing more when nobody listens
    stored: tuple[tuple[int, Mapping[str, Any]], ...] = ()

    @property
    def is_correction(self) -> bool:
        return self.rows is None


@dataclass(frozen=True)
class EventsPruned:
    """The events before `before` were deleted (services/usage/retention.py); the rollups and totals are unchanged."""

    topic: ClassVar[Topic] = Topic.RETENTION
    before: datetime
    count: int


@dataclass(frozen=True)
class SettingChanged:
    topic: ClassVar[Topic] = Topic.SETTINGS
    key: str  # e.g. 'limit.day'


@dataclass(frozen=True)
class PoliciesChanged:
    topic: ClassVar[Topic] = Topic.POLICIES
    reason: str  # 'created', 'updated', 'deleted', 'thresholds', 'allocation' (an allocation and its policies)
    policy_id: int | None = None


@dataclass(frozen=True)
class PricesChanged:
    topic: ClassVar[Topic] = Topic.PRICES
    provider: str
    model: str


@dataclass(frozen=True)
class SessionEnded:
    topic: ClassVar[Topic] = Topic.SESSIONS
    session_ids: tuple[str, ...]


@dataclass(frozen=True)
class TaskChanged:
    topic: ClassVar[Topic] = Topic.TASKS
    task_id: str


@dataclass(frozen=True)
class EcoChanged:
    """Eco mode switched. `spent_micros`/`limit_micros` when a policy switched it (the notifier reads today's
    spend otherwise)."""

    topic: ClassVar[Topic] = Topic.ECO
    eco_mode: bool
    reason: str
    spent_micros: int | None = None
    limit_micros: int | None = None


@dataclass(frozen=True)
class AgentPaused:
    topic: ClassVar[Topic] = Topic.AGENTS
    agent_id: str
    paused: bool
    reason: str


@dataclass(frozen=True)
class SyncFinished:
    topic: ClassVar[Topic] = Topic.SYNC
    source: str
    status: str  # 'ok' or 'error'


@dataclass(frozen=True)
class AlertsChanged:
    topic: ClassVar[Topic] = Topic.ALERTS
    alert_id: int | None = None  # None: several (a scheduled check counted open alerts again)
    reason: str = ''


@dataclass(frozen=True)
class AlertRaised:
    topic: ClassVar[Topic] = Topic.ALERT_RAISED
    alert: Mapping[str, Any]  # services/alerting/alerts.py's AlertOut


@dataclass(frozen=True)
class DeliveryChanged:
    topic: ClassVar[Topic] = Topic.DELIVERIES
    delivery_id: int
    kind: str = ''
    status: str = ''


@dataclass(frozen=True)
class DigestQueued:
    """The daily digest of `day` was queued as these deliveries (the notifier attempts them at once)."""

    topic: ClassVar[Topic] = Topic.DIGEST
    day: str
    delivery_ids: tuple[int, ...]


@dataclass(frozen=True)
class AccountsChanged:
    topic: ClassVar[Topic] = Topic.ACCOUNTS
    reason: str  # 'token created', 'token revoked', 'user created', 'user deleted', 'password changed'


@dataclass(frozen=True)
class RequestsRefused:
    """A client's requests were refused for their token, or one is accepted again after that."""

    topic: ClassVar[Topic] = Topic.REFUSALS
    client: str


LiveEvent = (UsageChanged | EventsPruned | SettingChanged | PoliciesChanged | PricesChanged | SessionEnded | TaskChanged
             | EcoChanged | AgentPaused | SyncFinished | AlertsChanged | AlertRaised | DeliveryChanged | DigestQueued
             | AccountsChanged | RequestsRefused)
