"""Database tables. Money is integer micro-USD; timestamps are naive UTC.

The ledger (`services/usage/ledger.py`) is the only writer of `usage_events` and of the spend tables derived from it
(`spend_rollups`, `spend_hourly`, `spend_daily`, `spend_scope_rollups`, `sessions`, `session_agents`,
`session_scope_spend`, `agents`, `task_spend`).
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

BIGINT_ID = BigInteger().with_variant(Integer, 'sqlite')  # SQLite only auto-increments INTEGER PRIMARY KEY


def _money() -> Any:
    return Field(default=0, sa_type=BigInteger, nullable=False)


def _count() -> Any:
    return Field(default=0, sa_type=BigInteger, nullable=False)


class UsageEvent(SQLModel, table=True):
    """One LLM call, as reported by an agent, the SDK, the LiteLLM callback or a pull."""

    __tablename__ = 'usage_events'
    __table_args__ = (
        UniqueConstraint('source', 'event_id', name='uq_usage_events_source_event_id'),
        # the usage listing pages by (ts, id), alone or after one of these filters; the recent spend (the forecast)
        # sums cost_micros over a range of ts from the first index alone, and the listing sorted by cost ranks the
        # newest events from it alone
        Index('ix_usage_events_ts_id_cost', 'ts', 'id', 'cost_micros'),
        Index('ix_usage_events_agent_ts_id', 'agent_id', 'ts', 'id'),
        Index('ix_usage_events_session_ts_id', 'session_id', 'ts', 'id'),
        Index('ix_usage_events_task_ts_id', 'task_id', 'ts', 'id'),
    )

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    event_id: str = Field(max_length=200)
    source: str = Field(max_length=32)
    channel: str = Field(max_length=16)
    ts: datetime
    provider: str = Field(max_length=100)
    model: str = Field(max_length=200)
    agent_id: str | None = Field(default=None, max_length=200)
    session_id: str | None = Field(default=None, max_length=200)
    user_id: str | None = Field(default=None, max_length=200)
    project: str | None = Field(default=None, max_length=200)
    task_id: str | None = Field(default=None, max_length=200)
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    input_tokens: int = _count()
    output_tokens: int = _count()
    cache_read_tokens: int = _count()
    cache_write_tokens: int = _count()
    cost_micros: int = _money()
    cost_source: str = Field(max_length=16)
    latency_ms: int | None = None
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column('metadata', JSON, nullable=False))
    created_at: datetime
    # chat, embedding, image, audio_transcription, audio_speech; null when the caller did not say
    kind: str | None = Field(default=None, max_length=24)
    # what the call used beyond text tokens (services/usage/units.py); null when nothing
    units: dict[str, Any] | None = Field(default=None, sa_column=Column('units', JSON, nullable=True))


class SpendMeasures(SQLModel):
    """What every spend rollup below adds up, per its key: tokens by kind, cost and requests."""

    input_tokens: int = _count()
    output_tokens: int = _count()
    cache_read_tokens: int = _count()
    cache_write_tokens: int = _count()
    cost_micros: int = _money()
    requests: int = _count()


class SpendRollup(SpendMeasures, table=True):
    """Hourly totals per (agent, provider, model, channel); '' stands for "no agent"."""

    __tablename__ = 'spend_rollups'

    hour: datetime = Field(primary_key=True)
    agent_id: str = Field(primary_key=True, max_length=200)
    provider: str = Field(primary_key=True, max_length=100)
    model: str = Field(primary_key=True, max_length=200)
    channel: str = Field(primary_key=True, max_length=16)
    unpriced_requests: int = _count()


class SpendHourly(SpendMeasures, table=True):
    """Hourly totals per channel alone: what reads of totals over many hours (the forecast's weeks of hours) add up,
    a row or two an hour instead of one per agent, provider and model."""

    __tablename__ = 'spend_hourly'

    hour: datetime = Field(primary_key=True)
    channel: str = Field(primary_key=True, max_length=16)


class SpendDaily(SpendMeasures, table=True):
    """Daily totals per (agent, provider, model, channel), by the local day of the zone that the `rollups.day_zone`
    setting names; '' stands for "no agent". Reads take whole days from here, the edges from the hours."""

    __tablename__ = 'spend_daily'

    day: date = Field(primary_key=True)
    agent_id: str = Field(primary_key=True, max_length=200)
    provider: str = Field(primary_key=True, max_length=100)
    model: str = Field(primary_key=True, max_length=200)
    channel: str = Field(primary_key=True, max_length=16)


class ScopeRollup(SpendMeasures, table=True):
    """Hourly totals per user, project, tag or session (the scopes the agent/provider/model rollups lack): what
    policies on those scopes count. An event with two tags counts under each."""

    __tablename__ = 'spend_scope_rollups'

    scope: str = Field(primary_key=True, max_length=16)  # user, project, tag, session
    hour: datetime = Field(primary_key=True)
    value: str = Field(primary_key=True, max_length=200)


class SessionScopeSpend(SQLModel, table=True):
    """Per-session totals by user, project, tag, provider and model: what session-period policies on those scopes
    count (agents have `session_agents`)."""

    __tablename__ = 'session_scope_spend'

    session_id: str = Field(primary_key=True, max_length=200)
    scope: str = Field(primary_key=True, max_length=16)  # user, project, tag, provider, model
    value: str = Field(primary_key=True, max_length=200)
    input_tokens: int = _count()
    output_tokens: int = _count()
    cost_micros: int = _money()
    requests: int = _count()


class SpendSession(SQLModel, table=True):
    """A session starts with its first event; `ended_at` is set by `POST /sessions/{id}/end`."""

    __tablename__ = 'sessions'
    __table_args__ = (Index('ix_sessions_started_at', 'started_at'),)

    id: str = Field(primary_key=True, max_length=200)
    started_at: datetime
    last_event_at: datetime
    ended_at: datetime | None = None
    input_tokens: int = _count()
    output_tokens: int = _count()
    cost_micros: int = _money()
    requests: int = _count()


class SessionAgent(SQLModel, table=True):
    """Per-agent totals inside one session."""

    __tablename__ = 'session_agents'

    session_id: str = Field(primary_key=True, max_length=200)
    agent_id: str = Field(primary_key=True, max_length=200)
    first_ts: datetime
    last_ts: datetime
    input_tokens: int = _count()
    output_tokens: int = _count()
    cost_micros: int = _money()
    requests: int = _count()


class Agent(SQLModel, table=True):
    """An agent seen in the ledger, with its lifetime totals and latest session."""

    __tablename__ = 'agents'

    id: str = Field(primary_key=True, max_length=200)
    first_seen_at: datetime
    last_request_at: datetime
    last_session_id: str | None = Field(default=None, max_length=200)
    input_tokens: int = _count()
    output_tokens: int = _count()
    cost_micros: int = _money()
    requests: int = _count()
    paused: bool = False


class TaskSpend(SQLModel, table=True):
    """Actual spend per task_id, whether or not the task was registered through the tasks API."""

    __tablename__ = 'task_spend'

    task_id: str = Field(primary_key=True, max_length=200)
    first_ts: datetime
    last_ts: datetime
    input_tokens: int = _count()
    output_tokens: int = _count()
    cost_micros: int = _money()
    requests: int = _count()


class Task(SQLModel, table=True):
    """A unit of work with an estimated cost, registered through the tasks API."""

    __tablename__ = 'tasks'

    id: str = Field(primary_key=True, max_length=200)
    title: str = Field(max_length=500)
    agent_id: str | None = Field(default=None, max_length=200)
    status: str = Field(default='pending', max_length=32)
    priority: int = 0
    estimated_cost_micros: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime
    updated_at: datetime
    deadline: datetime | None = None


class AppSetting(SQLModel, table=True):
    """Settings changed at run time (budget limits, eco mode, ...); environment settings are the defaults."""

    __tablename__ = 'settings'

    key: str = Field(primary_key=True, max_length=100)
    value: str = Field(max_length=2000)
    updated_at: datetime


class PriceOverride(SQLModel, table=True):
    """Our own price for a provider/model, applied before genai-prices. Micro-USD per million tokens, per call, per
    minute of audio, and per image by size and quality (`image_micros`: {"size/quality": micros}, '*' for any)."""

    __tablename__ = 'price_overrides'

    provider: str = Field(primary_key=True, max_length=100)
    model: str = Field(primary_key=True, max_length=200)
    input_micros_per_mtok: int = Field(sa_type=BigInteger)
    output_micros_per_mtok: int = Field(sa_type=BigInteger)
    cache_read_micros_per_mtok: int | None = Field(default=None, sa_type=BigInteger)
    cache_write_micros_per_mtok: int | None = Field(default=None, sa_type=BigInteger)
    updated_at: datetime
    request_micros: int | None = Field(default=None, sa_type=BigInteger)
    audio_micros_per_minute: int | None = Field(default=None, sa_type=BigInteger)
    image_micros: dict[str, int] | None = Field(default=None, sa_column=Column('image_micros', JSON, nullable=True))


class BudgetSnapshot(SQLModel, table=True):
    """Spend as a source reports it for one day: pulled from LiteLLM or billed by a provider. Re-pulling a day
    replaces its rows."""

    __tablename__ = 'budget_snapshots'
    __table_args__ = (
        UniqueConstraint('source', 'day', 'provider', 'model', name='uq_budget_snapshots_source_day_provider_model'),
        Index('ix_budget_snapshots_day', 'day'),
    )

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    source: str = Field(max_length=32)  # litellm, openai_direct, anthropic_direct, openrouter_direct
    day: date  # the UTC day the source reports
    provider: str = Field(max_length=100)
    model: str = Field(default='', max_length=200)  # '' when the source gives no model breakdown
    cost_micros: int = _money()
    input_tokens: int = _count()
    output_tokens: int = _count()
    requests: int = _count()
    fetched_at: datetime


class SyncRun(SQLModel, table=True):
    """One run of a puller: when, how it went, how many rows, and the (key-free) error."""

    __tablename__ = 'sync_runs'
    __table_args__ = (Index('ix_sync_runs_source_started', 'source', 'started_at'),)

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    source: str = Field(max_length=32)
    started_at: datetime
    finished_at: datetime | None = None
    status: str = Field(default='running', max_length=16)  # running, ok, error
    rows: int = 0
    error: str | None = Field(default=None, max_length=2000)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)  # e.g. which endpoints were unavailable


class Alert(SQLModel, table=True):
    """Something an operator should know: a threshold crossed, a sync failing, a reconciliation gap."""

    __tablename__ = 'alerts'
    __table_args__ = (Index('ix_alerts_dedupe_key', 'dedupe_key'), Index('ix_alerts_created_at', 'created_at'))

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    type: str = Field(max_length=40)
    severity: str = Field(max_length=16)  # info, warning, critical
    message: str = Field(max_length=2000)
    dedupe_key: str = Field(max_length=300)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime
    last_seen_at: datetime
    count: int = 1
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = Field(default=None, max_length=200)
    resolved_at: datetime | None = None


class Policy(SQLModel, table=True):
    """A budget rule: a scope (global, agent, session, user, provider, model, project, tag) with an optional value,
    a period, a limit, soft and critical percentages, and how far the action ladder may go."""

    __tablename__ = 'policies'

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    name: str = Field(max_length=200)
    scope: str = Field(max_length=16)
    scope_value: str | None = Field(default=None, max_length=200)
    period: str = Field(max_length=16)  # day, week, month, session, custom
    period_start: date | None = None  # custom range, local dates, inclusive
    period_end: date | None = None
    limit_micros: int = Field(sa_type=BigInteger)
    soft_percent: int = 80
    critical_percent: int = 95
    action: str = Field(default='warn', max_length=16)  # ignore, warn, throttle, block: the highest step allowed
    notify: list[str] = Field(default_factory=list, sa_type=JSON)  # in_app, log, webhook, email
    auto_eco: bool = False  # switch eco mode on when the soft threshold is crossed
    auto_pause: bool = False  # pause the agent (agent scope) when it reaches the limit
    enabled: bool = True
    origin: str = Field(default='api', max_length=16)  # api, file, panel (Budget settings), limit, env (limits),
    # allocation (a share or the total of an allocation: changed only through the allocation)
    allocation_id: int | None = Field(default=None, sa_type=BigInteger)  # the allocation of origin 'allocation'
    created_at: datetime
    updated_at: datetime


class Allocation(SQLModel, table=True):
    """A parent budget split by percent or amount into shares (services/budget/allocations.py). Each share is enforced
    by a policy of origin 'allocation' with this allocation's id; so is the whole limit when `enforce_total`."""

    __tablename__ = 'allocations'

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    period: str = Field(max_length=16)  # day, week, month
    limit_micros: int = Field(sa_type=BigInteger)
    enforce_total: bool = True  # a global policy holds the whole limit too
    soft_percent: int = 80
    critical_percent: int = 95
    action: str = Field(default='warn', max_length=16)
    notify: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime
    updated_at: datetime


class AllocationShare(SQLModel, table=True):
    """One share of an allocation: a scope value and either a percent of the limit or an amount."""

    __tablename__ = 'allocation_shares'
    __table_args__ = (UniqueConstraint('allocation_id', 'scope', 'scope_value', name='uq_allocation_shares_scope'),)

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    allocation_id: int = Field(sa_type=BigInteger)
    position: int  # the order given
    scope: str = Field(max_length=16)  # agent, user, project, tag, provider, model
    scope_value: str = Field(max_length=200)
    percent_bp: int | None = None  # a percent share in hundredths of a percent (60 % = 6000)
    amount_micros: int | None = Field(default=None, sa_type=BigInteger)  # an amount share


class Delivery(SQLModel, table=True):
    """One attempt chain to deliver an alert or an eco-mode change to a channel; failures are kept and retried."""

    __tablename__ = 'deliveries'
    __table_args__ = (Index('ix_deliveries_status', 'status'),)

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    kind: str = Field(max_length=16)  # alert, eco
    ref_id: int | None = Field(default=None, sa_type=BigInteger)  # the alert's id
    channel: str = Field(max_length=16)  # log, webhook, slack, email, n8n
    target: str = Field(max_length=500)  # where to (URL without credentials, or address)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: str = Field(default='pending', max_length=16)  # pending, delivered, failed
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=2000)
    next_attempt_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class Notice(SQLModel, table=True):
    """A change one process tells the others sharing a SQLite file (PostgreSQL uses NOTIFY instead): the CLI's
    `--db` commands reach the running server this way. Kept for minutes, then pruned."""

    __tablename__ = 'notices'

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    payload: str = Field(max_length=2000)  # {"from": instance, "topics": [...]}
    created_at: datetime


class ApiToken(SQLModel, table=True):
    """A bearer token for the REST API, with one role. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = 'api_tokens'

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    name: str = Field(max_length=100)
    role: str = Field(max_length=16)  # ingest, read, admin
    token_hash: str = Field(max_length=64, unique=True)  # hex SHA-256 of the token
    prefix: str = Field(max_length=16)  # the token's first characters, to recognise it in a list
    created_at: datetime
    created_by: str = Field(max_length=200)
    revoked_at: datetime | None = None


class User(SQLModel, table=True):
    """Someone who logs in to the dashboard: an admin, or a read-only viewer. Passwords are argon2id hashes."""

    __tablename__ = 'users'

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    role: str = Field(max_length=16)  # admin, read
    password_hash: str = Field(max_length=200)
    created_at: datetime
    password_changed_at: datetime


class PriceDataFile(SQLModel, table=True):
    """genai-prices data fetched by `spendgauge prices update`: the newest row is what every instance prices with
    (the data bundled with genai-prices when there is none). Older rows are deleted when a newer one is stored."""

    __tablename__ = 'price_data'

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    fetched_at: datetime
    fetched_by: str = Field(max_length=200)
    url: str = Field(max_length=2000)
    sha256: str = Field(max_length=64)
    size_bytes: int = Field(sa_type=BigInteger)
    models: int  # in the data, all providers
    data: str = Field(sa_type=Text)  # the JSON as fetched


class PriceAudit(SQLModel, table=True):
    """One re-pricing of stored events (`spendgauge prices recalculate`): who, which range, and what changed by how
    much. Written when it starts (status running) and brought up to date with every batch it commits."""

    __tablename__ = 'price_audits'

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    started_at: datetime
    finished_at: datetime | None = None
    actor: str = Field(max_length=200)
    range_start: datetime
    range_end: datetime
    status: str = Field(max_length=16)  # running, done, failed
    price_data: str = Field(max_length=200)  # the data it priced with (pricing.Pricer.data_label)
    events_examined: int = _count()  # priced and unpriced events in the range
    events_changed: int = _count()
    events_newly_priced: int = _count()  # unpriced before, priced now
    events_kept: int = _count()  # priced, but their model has no price now: they keep the one they have
    before_micros: int = _money()  # of the changed events
    after_micros: int = _money()
    by_model: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)  # per provider/model changed
    error: str | None = Field(default=None, max_length=2000)


class AuditRecord(SQLModel, table=True):
    """One state change, written by its command in the same transaction (services/audit/trail.py): who, what, on
    which target, and the state before and after (secrets masked). Raw usage events are not kept here (they are in
    `usage_events`); the JSONL audit log has them."""

    __tablename__ = 'audit_log'
    __table_args__ = (
        # GET /api/v1/audit pages by (at, id), newest first, alone or after an actor or action filter
        Index('ix_audit_log_at_id', 'at', 'id'),
        Index('ix_audit_log_actor_at_id', 'actor', 'at', 'id'),
        Index('ix_audit_log_action_at_id', 'action', 'at', 'id'),
    )

    id: int | None = Field(default=None, sa_type=BIGINT_ID, primary_key=True)
    at: datetime
    actor: str = Field(max_length=200)  # the token's or user's name, `cli`, `dashboard`, or `spendgauge` (automatic)
    action: str = Field(max_length=64)  # the command: `policies.create`, `prices.recalculate`, ...
    target: str = Field(default='', max_length=500)  # what it changed: `policy:3`, `agent:coder`, ...
    before: Any = Field(default=None, sa_type=JSON, nullable=True)
    after: Any = Field(default=None, sa_type=JSON, nullable=True)
