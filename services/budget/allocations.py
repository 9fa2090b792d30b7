"""Allocations: a parent budget (a limit per day, week or month) split by percent or amount into shares over agents,
users, projects, tags, providers or models.

Each share is a budget policy of its own, of origin 'allocation' with the allocation's id, so it warns, throttles,
blocks and alerts exactly like any policy; with `enforce_total` (the default) a global policy of the same origin holds
the whole limit as well ("$1000 a month split 60/40 between project a and b": a and b are held to $600 and $400, and
everything together, also spend outside the shares, to $1000). The policies are written in the same transaction as the
allocation and are read-only elsewhere: they change only through the allocation.

Share limits are integer micro-USD: an amount share's limit is its amount; a percent share's limit is the percent of
the parent limit rounded down to the micro-USD (so the shares never add up to more than the parent). Percent has at
most two places; the shares (amount shares counted as amount / limit) add up to at most 100 %.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field, StringConstraints, ValidationError, model_validator
from sqlalchemy import Connection, delete, insert, select, update
from typing_extensions import TypedDict

from services.budget.policies import Ladder
from services.core.errors import Conflict, Invalid, NotFound
from services.core.inputs import NO_NUL, Input, Label
from services.core.money import Usd, micros_to_usd, usd_to_micros
from services.core.tables import ALLOCATION_SHARES, ALLOCATIONS, POLICIES
from services.usage.events import describe_errors

ORIGIN: Final = 'allocation'
SHARE_SCOPES = ('agent', 'user', 'project', 'tag', 'provider', 'model')
ALLOCATION_PERIODS = ('day', 'week', 'month')
MAX_SHARES = 200
MAX_NAME = 100
WHOLE_BP = 10_000  # 100 % in hundredths of a percent
TOTAL_SUFFIX = ' · total'

ShareScope = Literal['agent', 'user', 'project', 'tag', 'provider', 'model']
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME, pattern=NO_NUL)]
Percent = Annotated[Decimal, Field(gt=0, le=100, decimal_places=2, allow_inf_nan=False,
                                   description='percent of the limit, at most two places')]


class AllocationInvalid(Invalid):
    """The message names the field, and the share (`shares.2 (project=b)`) where one is at fault."""


class AllocationNotFound(NotFound):
    pass


class AllocationTaken(Conflict):
    pass


class ShareIn(Input):
    model_config = ConfigDict(extra='forbid')

    scope: ShareScope
    scope_value: Label
    percent: Percent | None = None
    amount_usd: Usd | None = None

    @model_validator(mode='after')
    def _one_of(self) -> ShareIn:
        if (self.percent is None) == (self.amount_usd is None):
            raise ValueError('give either percent or amount_usd')
        if self.amount_usd is not None and usd_to_micros(self.amount_usd) <= 0:
            raise ValueError('amount_usd: must be at least $0.000001')
        return self

    @property
    def label(self) -> str:
        return f'{self.scope}={self.scope_value}'

    @property
    def bp(self) -> int | None:
        return None if self.percent is None else int(self.percent * 100)

    @property
    def amount_micros(self) -> int | None:
        return None if self.amount_usd is None else usd_to_micros(self.amount_usd)


class AllocationIn(Ladder):
    """An allocation as the API and the page give it; money in USD (decimal string or number). Its ladder is every
    share's."""

    model_config = ConfigDict(extra='forbid')

    name: Name
    period: Literal['day', 'week', 'month'] = 'month'
    limit_usd: Usd
    shares: list[ShareIn] = Field(min_length=1, max_length=MAX_SHARES)
    enforce_total: bool = True

    @model_validator(mode='after')
    def _consistent(self) -> AllocationIn:
        limit = self.limit_micros
        if limit <= 0:
            raise ValueError('limit_usd: must be more than $0')
        seen: dict[tuple[str, str], int] = {}
        allocated = 0  # in micro-USD x WHOLE_BP, so percent and amount shares add up exactly
        for index, share in enumerate(self.shares):
            where = f'shares.{index} ({share.label})'
            if (share.scope, share.scope_value) in seen:
                raise ValueError(f'{where}: given twice (also shares.{seen[share.scope, share.scope_value]})')
            seen[share.scope, share.scope_value] = index
            amount = share.amount_micros
            if amount is not None and amount > limit:
                raise ValueError(f'{where}: amount_usd ${micros_to_usd(amount)} is more than the limit '
                                 f'${micros_to_usd(limit)}')
            if share_limit(limit, share.bp, amount) <= 0:
                raise ValueError(f'{where}: {share.percent} % of ${micros_to_usd(limit)} is less than $0.000001')
            allocated += limit * share.bp if share.bp is not None else WHOLE_BP * (amount or 0)
            if allocated > WHOLE_BP * limit:
                raise ValueError(f'{where}: takes the shares to {_percent_text(allocated, limit)} % of the limit; '
                                 'they may add up to at most 100 % (an amount share counts as amount / limit)')
        return self

    @property
    def limit_micros(self) -> int:
        return usd_to_micros(self.limit_usd)

    def row(self) -> dict[str, Any]:
        return {'name': self.name, 'period': self.period, 'limit_micros': self.limit_micros,
                'enforce_total': self.enforce_total, 'soft_percent': self.soft_percent,
                'critical_percent': self.critical_percent, 'action': self.action, 'notify': sorted(set(self.notify))}


def _percent_text(scaled: int, limit: int) -> str:
    """`scaled` (micro-USD x WHOLE_BP) as a percent of `limit`, two places."""
    return f'{Decimal(scaled) / limit / 100:.2f}'


def share_limit(limit_micros: int, bp: int | None, amount_micros: int | None) -> int:
    """A share's limit: its amount, or its percent of the limit rounded down to the micro-USD."""
    if bp is None:
        return amount_micros or 0
    return limit_micros * bp // WHOLE_BP


def validate(data: dict[str, Any]) -> AllocationIn:
    try:
        return AllocationIn.model_validate(data)
    except ValidationError as exc:
        raise AllocationInvalid(describe_errors(exc)) from None


# --- what is stored -----------------------------------------------------------------------------------------------

class ShareOut(TypedDict):
    scope: str  # agent, user, project, tag, provider, model
    scope_value: str
    percent: str | None  # a percent share: '60.00'
    amount_micros: int | None  # an amount share
    amount_usd: str | None
    limit_micros: int  # what the share's policy holds it to
    limit_usd: str
    policy_id: int
    spent_micros: int  # in the current period (from the budget counters)
    spent_usd: str


class AllocationOut(TypedDict):
    id: int
    name: str
    period: str  # day, week, month
    limit_micros: int
    limit_usd: str
    enforce_total: bool  # a global policy holds the whole limit too
    total_policy_id: int | None  # that policy
    soft_percent: int
    critical_percent: int
    action: str  # the furthest step of every share's policy: ignore, warn, throttle, block
    notify: list[str]
    allocated_micros: int  # the shares' limits added up
    allocated_usd: str
    spent_micros: int  # in the current period: the total policy's spend, else the shares' added up
    spent_usd: str
    shares: list[ShareOut]


class AllocationList(TypedDict):
    items: list[AllocationOut]
    count: int


class AllocationDeleted(TypedDict):
    deleted: int  # the allocation id
    policies: int  # the policies deleted with it


@dataclass(frozen=True, slots=True)
class Share:
    scope: str
    scope_value: str
    bp: int | None
    amount_micros: int | None
    limit_micros: int
    policy_id: int

    @property
    def label(self) -> str:
        return f'{self.scope}={self.scope_value}'

    def as_dict(self, spent: int) -> ShareOut:
        amount = self.amount_micros
        return {'scope': self.scope, 'scope_value': self.scope_value,
                'percent': None if self.bp is None else f'{Decimal(self.bp) / 100:.2f}',
                'amount_micros': amount, 'amount_usd': None if amount is None else micros_to_usd(amount),
                'limit_micros': self.limit_micros, 'limit_usd': micros_to_usd(self.limit_micros),
                'policy_id': self.policy_id, 'spent_micros': spent, 'spent_usd': micros_to_usd(spent)}


@dataclass(frozen=True, slots=True)
class AllocationRule:
    id: int
    name: str
    period: str
    limit_micros: int
    enforce_total: bool
    total_policy_id: int | None
    soft_percent: int
    critical_percent: int
    action: str
    notify: tuple[str, ...]
    shares: tuple[Share, ...]

    def as_dict(self, spend: Callable[[int], int] = lambda _: 0) -> AllocationOut:
        """`spend(policy id)`: the policy's spend in the current period (the budget counters')."""
        shares = [s.as_dict(spend(s.policy_id)) for s in self.shares]
        allocated = sum(s.limit_micros for s in self.shares)
        spent = (spend(self.total_policy_id) if self.total_policy_id is not None
                 else sum(s['spent_micros'] for s in shares))
        return {'id': self.id, 'name': self.name, 'period': self.period, 'limit_micros': self.limit_micros,
                'limit_usd': micros_to_usd(self.limit_micros), 'enforce_total': self.enforce_total,
                'total_policy_id': self.total_policy_id, 'soft_percent': self.soft_percent,
                'critical_percent': self.critical_percent, 'action': self.action, 'notify': list(self.notify),
                'allocated_micros': allocated, 'allocated_usd': micros_to_usd(allocated),
                'spent_micros': spent, 'spent_usd': micros_to_usd(spent), 'shares': shares}


def list_allocations(conn: Connection) -> list[AllocationRule]:
    return _read(conn, None)


def get_allocation(conn: Connection, allocation_id: int) -> AllocationRule:
    found = _read(conn, allocation_id)
    if not found:
        raise AllocationNotFound(f'no allocation {allocation_id}')
    return found[0]


def _read(conn: Connection, allocation_id: int | None) -> list[AllocationRule]:
    """Allocations with their shares and policies in three queries, whatever their number."""
    parents = select(ALLOCATIONS).order_by(ALLOCATIONS.c.id)
    shares = select(ALLOCATION_SHARES).order_by(ALLOCATION_SHARES.c.allocation_id, ALLOCATION_SHARES.c.position)
    owned = select(POLICIES.c.id, POLICIES.c.allocation_id, POLICIES.c.scope, POLICIES.c.scope_value) \
        .where(POLICIES.c.origin == ORIGIN)
    if allocation_id is not None:
        parents = parents.where(ALLOCATIONS.c.id == allocation_id)
        shares = shares.where(ALLOCATION_SHARES.c.allocation_id == allocation_id)
        owned = owned.where(POLICIES.c.allocation_id == allocation_id)
    policy_ids = {(r.allocation_id, r.scope, r.scope_value): r.id for r in conn.execute(owned)}
    by_parent: dict[int, list[Any]] = {}
    for r in conn.execute(shares):
        by_parent.setdefault(r.allocation_id, []).append(r)
    found = []
    for p in conn.execute(parents):
        limit = int(p.limit_micros)
        found.append(AllocationRule(
            p.id, p.name, p.period, limit, bool(p.enforce_total), policy_ids.get((p.id, 'global', None)),
            p.soft_percent, p.critical_percent, p.action, tuple(p.notify or ()),
            tuple(Share(s.scope, s.scope_value, s.percent_bp, s.amount_micros,
                        share_limit(limit, s.percent_bp, s.amount_micros),
                        policy_ids.get((p.id, s.scope, s.scope_value), 0)) for s in by_parent.get(p.id, []))))
    return found


def create_allocation(conn: Connection, allocation: AllocationIn) -> AllocationRule:
    _name_free(conn, allocation.name, None)
    now = datetime.now(UTC)
    pk: int = conn.execute(insert(ALLOCATIONS).values(**allocation.row(), created_at=now, updated_at=now)
                           .returning(ALLOCATIONS.c.id)).scalar_one()
    _store_shares(conn, pk, allocation, now)
    return get_allocation(conn, pk)


def update_allocation(conn: Connection, allocation_id: int, allocation: AllocationIn) -> AllocationRule:
    """Replace the allocation as a whole. A share kept (same scope and value) keeps its policy, so its counters and
    alerts carry on; a share dropped loses its policy."""
    get_allocation(conn, allocation_id)
    _name_free(conn, allocation.name, allocation_id)
    now = datetime.now(UTC)
    conn.execute(update(ALLOCATIONS).where(ALLOCATIONS.c.id == allocation_id)
                 .values(**allocation.row(), updated_at=now))
    conn.execute(delete(ALLOCATION_SHARES).where(ALLOCATION_SHARES.c.allocation_id == allocation_id))
    _store_shares(conn, allocation_id, allocation, now)
    return get_allocation(conn, allocation_id)


def delete_allocation(conn: Connection, allocation_id: int) -> int:
    """Delete the allocation, its shares and their policies; returns how many policies went."""
    get_allocation(conn, allocation_id)
    conn.execute(delete(ALLOCATION_SHARES).where(ALLOCATION_SHARES.c.allocation_id == allocation_id))
    conn.execute(delete(ALLOCATIONS).where(ALLOCATIONS.c.id == allocation_id))
    return conn.execute(delete(POLICIES).where(POLICIES.c.origin == ORIGIN,
                                               POLICIES.c.allocation_id == allocation_id)).rowcount


def _name_free(conn: Connection, name: str, allocation_id: int | None) -> None:
    taken = conn.execute(select(ALLOCATIONS.c.id).where(ALLOCATIONS.c.name == name)).scalar()
    if taken is not None and taken != allocation_id:
        raise AllocationTaken(f'name: allocation {taken} is already called {name!r}')


def _store_shares(conn: Connection, allocation_id: int, allocation: AllocationIn, now: datetime) -> None:
    limit = allocation.limit_micros
    if allocation.shares:
        conn.execute(insert(ALLOCATION_SHARES), [
            {'allocation_id': allocation_id, 'position': index, 'scope': s.scope, 'scope_value': s.scope_value,
             'percent_bp': s.bp, 'amount_micros': s.amount_micros} for index, s in enumerate(allocation.shares)])
    wanted: dict[tuple[str, str | None], dict[str, Any]] = {}
    ladder = {'period': allocation.period, 'period_start': None, 'period_end': None,
              'soft_percent': allocation.soft_percent, 'critical_percent': allocation.critical_percent,
              'action': allocation.action, 'notify': sorted(set(allocation.notify)), 'auto_eco': False,
              'auto_pause': False, 'enabled': True}
    for s in allocation.shares:
        wanted[s.scope, s.scope_value] = {**ladder, 'name': policy_name(allocation.name, s.label),
                                          'scope': s.scope, 'scope_value': s.scope_value,
                                          'limit_micros': share_limit(limit, s.bp, s.amount_micros)}
    if allocation.enforce_total:
        wanted['global', None] = {**ladder, 'name': policy_name(allocation.name, None), 'scope': 'global',
                                  'scope_value': None, 'limit_micros': limit}
    existing = {(r.scope, r.scope_value): r.id for r in conn.execute(
        select(POLICIES.c.id, POLICIES.c.scope, POLICIES.c.scope_value)
        .where(POLICIES.c.origin == ORIGIN, POLICIES.c.allocation_id == allocation_id))}
    gone = [pk for key, pk in existing.items() if key not in wanted]
    if gone:
        conn.execute(delete(POLICIES).where(POLICIES.c.id.in_(gone)))
    for key, values in wanted.items():
        if key in existing:
            conn.execute(update(POLICIES).where(POLICIES.c.id == existing[key]).values(**values, updated_at=now))
        else:
            conn.execute(insert(POLICIES).values(**values, origin=ORIGIN, allocation_id=allocation_id,
                                                 created_at=now, updated_at=now))


def policy_name(allocation: str, share: str | None) -> str:
    """`Eng split · project=search`, or `Eng split · total` (a policy name has at most 200 characters)."""
    return (f'{allocation} · {share}' if share else f'{allocation}{TOTAL_SUFFIX}')[:200]

