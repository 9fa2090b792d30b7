"""Budget policies: validation, storage and preloading from a YAML/JSON file and the environment."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Connection, delete, insert, select, update
from typing_extensions import TypedDict

from services.core.errors import Invalid, NotFound
from services.core.inputs import Input, Label
from services.core.money import Usd, micros_to_usd, usd_to_micros
from services.core.periods import checked_day, checked_span
from services.core.tables import AGENTS, POLICIES
from services.usage.events import describe_errors

SCOPES = ('global', 'agent', 'session', 'user', 'provider', 'model', 'project', 'tag')
POLICY_PERIODS = ('day', 'week', 'month', 'session', 'custom')
ACTIONS = ('ignore', 'warn', 'throttle', 'block')
CHANNELS = ('in_app', 'log', 'webhook', 'email')
Text = Label


class PolicyOut(TypedDict):
    id: int
    name: str
    scope: str  # global, agent, session, user, provider, model, project, tag
    scope_value: str | None  # None: every value of the scope, each counted on its own
    period: str  # day, week, month, session, custom
    period_start: str | None  # a custom period's first and last day
    period_end: str | None
    limit_micros: int
    limit_usd: str
    soft_percent: int  # warn from here
    critical_percent: int  # throttle from here (when the action allows)
    action: str  # the furthest step: ignore, warn, throttle, block
    notify: list[str]  # alert channels; empty: every configured one
    auto_eco: bool  # switch eco mode on at the soft threshold
    auto_pause: bool  # pause the agent at the limit
    enabled: bool
    origin: str  # api, file, panel (the Budget settings thresholds), limit or env (the day/week/month limits),
    # allocation (a share or the total of an allocation)
    allocation_id: int | None  # the allocation an 'allocation' policy belongs to


class ScopeSpend(TypedDict):
    scope_value: str | None  # None for a global policy
    spent_micros: int
    spent_usd: str


class PolicyWithSpend(PolicyOut):
    spent_micros: int  # the largest spend of any scope value in the current period
    spent_usd: str
    current: list[ScopeSpend]  # per scope value, costliest first (at most 100)


class PolicyList(TypedDict):
    items: list[PolicyWithSpend]
    count: int


class PolicyDeleted(TypedDict):
    deleted: int  # the policy id


class PolicyNotFound(NotFound):
    pass


class PolicyInvalid(Invalid):
    """The message names the field."""


class PolicyReadOnly(PolicyInvalid):
    """Policies from the file or the environment are changed there: every start re-syncs them."""

    status = 409


def _writable(policy: PolicyRule) -> None:
    if policy.origin == 'file':
        raise PolicyReadOnly(f'policy {policy.id} comes from SPENDGAUGE_POLICIES_FILE: change it there')
    if policy.origin in ('env', 'limit'):
        raise PolicyReadOnly(f'policy {policy.id} is the {policy.period} budget limit: change it with `spendgauge '
                             f'set-limit`, PUT /api/v1/budget/limits/{policy.period} or Budget settings')
    if policy.origin == 'panel':
        raise PolicyReadOnly(f'policy {policy.id} is an agent threshold: change it in Budget settings '
                             '(PUT /api/v1/thresholds)')
    if policy.origin == 'allocation':
        raise PolicyReadOnly(f'policy {policy.id} belongs to allocation {policy.allocation_id}: change the allocation '
                             f'(the Allocations page or PUT /api/v1/allocations/{policy.allocation_id})')


class Ladder(Input):
    """The ladder a policy climbs (warn at soft, throttle at critical, block at the limit, never beyond `action`) and
    where its alerts go; an allocation gives its shares one."""

    soft_percent: int = Field(default=80, ge=1, le=100)
    critical_percent: int = Field(default=95, ge=1, le=100)
    action: Literal['ignore', 'warn', 'throttle', 'block'] = 'warn'
    notify: list[Literal['in_app', 'log', 'webhook', 'email']] = Field(default_factory=list, max_length=4)

    @model_validator(mode='after')
    def _ordered(self) -> Self:
        if self.soft_percent > self.critical_percent:
            raise ValueError('soft_percent: must not exceed critical_percent')
        return self


class PolicyIn(Ladder):
    """A policy as the API, the file and the page give it; money in USD (decimal string or number)."""

    model_config = ConfigDict(extra='forbid')

    name: Text
    scope: Literal['global', 'agent', 'session', 'user', 'provider', 'model', 'project', 'tag'] = 'global'
    scope_value: Text | None = None
    period: Literal['day', 'week', 'month', 'session', 'custom'] = 'day'
    period_start: date | None = None
    period_end: date | None = None
    limit_usd: Usd
    auto_eco: bool = False
    auto_pause: bool = False
    enabled: bool = True

    @model_validator(mode='after')
    def _consistent(self) -> PolicyIn:
        if self.scope == 'global' and self.scope_value is not None:
            raise ValueError('scope_value: a global policy has no scope value')
        if self.auto_pause and self.scope != 'agent':
            raise ValueError('auto_pause: only an agent policy can pause its agent')
        if self.period == 'custom':
            if self.period_start is None or self.period_end is None:
                raise ValueError('period_start: a custom period needs period_start and period_end')
            checked_day(self.period_start, 'period_start')
            checked_day(self.period_end, 'period_end')
            if self.period_end < self.period_start:
                raise ValueError('period_end: must not be before period_start')
            checked_span(self.period_start, self.period_end, 'period_end')
        elif self.period_start is not None or self.period_end is not None:
            raise ValueError('period_start: only a custom period has period_start and period_end')
        if not self.limit_usd.is_finite():
            raise ValueError('limit_usd: must be a finite amount')
        return self

    def row(self) -> dict[str, Any]:
        values = self.model_dump(exclude={'limit_usd'})
        values['limit_micros'] = usd_to_micros(self.limit_usd)
        values['notify'] = sorted(set(self.notify))
        return values


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """A stored policy as the checker uses it."""

    id: int
    name: str
    scope: str
    scope_value: str | None
    period: str
    period_start: date | None
    period_end: date | None
    limit_micros: int
    soft_percent: int
    critical_percent: int
    action: str
    notify: tuple[str, ...]
    auto_eco: bool
    enabled: bool
    origin: str
    auto_pause: bool = False
    allocation_id: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> PolicyRule:
        return cls(row.id, row.name, row.scope, row.scope_value, row.period, row.period_start, row.period_end,
                   int(row.limit_micros), row.soft_percent, row.critical_percent, row.action,
                   tuple(row.notify or ()), bool(row.auto_eco), bool(row.enabled), row.origin,
                   bool(row.auto_pause), row.allocation_id)

    def as_dict(self) -> PolicyOut:
        return {'id': self.id, 'name': self.name, 'scope': self.scope, 'scope_value': self.scope_value,
                'period': self.period,
                'period_start': self.period_start.isoformat() if self.period_start else None,
                'period_end': self.period_end.isoformat() if self.period_end else None,
                'limit_micros': self.limit_micros, 'limit_usd': micros_to_usd(self.limit_micros),
                'soft_percent': self.soft_percent, 'critical_percent': self.critical_percent,
                'action': self.action, 'notify': list(self.notify), 'auto_eco': self.auto_eco,
                'auto_pause': self.auto_pause, 'enabled': self.enabled, 'origin': self.origin,
                'allocation_id': self.allocation_id}

    def with_spend(self, spend: dict[str, int]) -> PolicyWithSpend:
        """The policy with this period's spend per scope value (scope key -> micro-USD, '' for a global policy)."""
        current: list[ScopeSpend] = [
            {'scope_value': key or None, 'spent_micros': spent, 'spent_usd': micros_to_usd(spent)}
            for key, spent in sorted(spend.items(), key=lambda kv: (-kv[1], kv[0]))]
        largest = max(spend.values(), default=0)
        return {**self.as_dict(), 'spent_micros': largest, 'spent_usd': micros_to_usd(largest),
                'current': current[:100]}

    def as_input(self) -> dict[str, Any]:
        """The editable fields, as PolicyIn takes them."""
        data: dict[str, Any] = dict(self.as_dict())
        for name in ('id', 'origin', 'limit_micros', 'allocation_id'):
            data.pop(name)
        return data


def validate(data: dict[str, Any]) -> PolicyIn:
    try:
        return PolicyIn.model_validate(data)
    except ValidationError as exc:
        raise PolicyInvalid(describe_errors(exc)) from None


def list_policies(conn: Connection) -> list[PolicyRule]:
    return [PolicyRule.from_row(r) for r in conn.execute(select(POLICIES).order_by(POLICIES.c.id))]


def get_policy(conn: Connection, policy_id: int) -> PolicyRule:
    row = conn.execute(select(POLICIES).where(POLICIES.c.id == policy_id)).first()
    if row is None:
        raise PolicyNotFound(f'no policy {policy_id}')
    return PolicyRule.from_row(row)


def create_policy(conn: Connection, policy: PolicyIn, origin: str = 'api') -> PolicyRule:
    now = datetime.now(UTC)
    pk: int = conn.execute(insert(POLICIES).values(**policy.row(), origin=origin, created_at=now, updated_at=now)
                           .returning(POLICIES.c.id)).scalar_one()
    return get_policy(conn, pk)


def update_policy(conn: Connection, policy_id: int, changes: dict[str, Any]) -> PolicyRule:
    """Apply a partial change; the merged policy is validated as a whole."""
    current = get_policy(conn, policy_id)
    _writable(current)
    merged = validate({**current.as_input(), **changes})
    conn.execute(update(POLICIES).where(POLICIES.c.id == policy_id)
                 .values(**merged.row(), updated_at=datetime.now(UTC)))
    return get_policy(conn, policy_id)


def delete_policy(conn: Connection, policy_id: int) -> None:
    _writable(get_policy(conn, policy_id))
    conn.execute(delete(POLICIES).where(POLICIES.c.id == policy_id))


def load_file(path: str | Path) -> list[PolicyIn]:
    """Policies from a YAML (or JSON) file: a list, or a mapping with a `policies` list."""
    return load_file_text(Path(path).read_text(), str(path))


def load_file_text(text: str, path: str = 'policies.yaml') -> list[PolicyIn]:
    if path.endswith('.json'):
        data = json.loads(text)
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyInvalid(f'{path}: not valid YAML: {exc}') from None
    if isinstance(data, dict):
        data = data.get('policies')
    if not isinstance(data, list):
        raise PolicyInvalid(f'{path}: expected a list of policies (or a mapping with a `policies` list)')
    policies = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise PolicyInvalid(f'{path}: policy {index} is not a mapping')
        try:
            policies.append(validate({k: str(v) if k == 'limit_usd' else v for k, v in item.items()}))
        except PolicyInvalid as exc:
            raise PolicyInvalid(f'{path}: policy {index}: {exc}') from None
    return policies


def sync_origin(conn: Connection, origin: Literal['file', 'panel'], policies: list[PolicyIn]) -> int:
    """Make the stored policies of this origin match `policies` (by name); returns how many there are now."""
    existing = {r.name: r.id for r in conn.execute(select(POLICIES.c.id, POLICIES.c.name)
                                                   .where(POLICIES.c.origin == origin))}
    now = datetime.now(UTC)
    wanted = {p.name: p for p in policies}
    for name, pk in existing.items():
        if name not in wanted:
            conn.execute(delete(POLICIES).where(POLICIES.c.id == pk))
    for name, policy in wanted.items():
        if name in existing:
            conn.execute(update(POLICIES).where(POLICIES.c.id == existing[name]).values(**policy.row(),
                                                                                       updated_at=now))
        else:
            conn.execute(insert(POLICIES).values(**policy.row(), origin=origin, created_at=now, updated_at=now))
    return len(wanted)


def agent_paused(conn: Connection, agent_id: str) -> bool | None:
    """Whether the agent is paused; None when the ledger has not seen it."""
    return conn.execute(select(AGENTS.c.paused).where(AGENTS.c.id == agent_id)).scalar()


def set_agent_paused(conn: Connection, agent_id: str, paused: bool) -> bool:
    """Pause or resume an agent the ledger has seen; False when there is no such agent."""
    return conn.execute(update(AGENTS).where(AGENTS.c.id == agent_id).values(paused=paused)).rowcount > 0
