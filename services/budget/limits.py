"""Settings changed at run time, stored in the `settings` table: budget limits for now, more to come."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite
from typing_extensions import TypedDict

from services.core.context import BudgetContext
from services.core.errors import Invalid
from services.core.money import MAX_MICROS, micros_to_usd
from services.core.periods import PERIODS
from services.core.tables import SETTINGS

MAX_LIMIT_MICROS = MAX_MICROS


class LimitOut(TypedDict):
    limit_micros: int
    limit_usd: str


class Limits(TypedDict):
    day: LimitOut | None  # None: no limit for the period
    week: LimitOut | None
    month: LimitOut | None


def get_value(conn: Connection, key: str) -> str | None:
    return conn.execute(select(SETTINGS.c.value).where(SETTINGS.c.key == key)).scalar_one_or_none()


def set_value(conn: Connection, key: str, value: str) -> None:
    insert = postgresql.insert if conn.dialect.name == 'postgresql' else sqlite.insert
    statement = insert(SETTINGS).values(key=key, value=value, updated_at=datetime.now(UTC))
    conn.execute(statement.on_conflict_do_update(index_elements=['key'], set_={
        'value': statement.excluded.value, 'updated_at': statement.excluded.updated_at}))


def get_limit(conn: Connection, budget: BudgetContext, period: str) -> int | None:
    """The budget limit for a period in micro-USD; the daily one defaults to the environment setting."""
    value = get_value(conn, f'limit.{period}')
    if value is not None:
        return int(value)
    return budget.default_daily_micros if period == 'day' else None


def get_limits(conn: Connection, budget: BudgetContext) -> Limits:
    """The limit of each period (the daily one defaults to the environment setting)."""
    def limit(period: str) -> LimitOut | None:
        micros = get_limit(conn, budget, period)
        return None if micros is None else {'limit_micros': micros, 'limit_usd': micros_to_usd(micros)}

    return {'day': limit('day'), 'week': limit('week'), 'month': limit('month')}


def set_limit(conn: Connection, period: str, micros: int) -> bool:
    """Store the limit; returns whether it differs from what was stored."""
    if period not in PERIODS:
        raise Invalid(f'period must be one of {", ".join(PERIODS)}, got {period!r}')
    if not 0 <= micros <= MAX_LIMIT_MICROS:
        raise Invalid(f'limit must be between $0 and ${MAX_LIMIT_MICROS // 1_000_000:,}')
    key = f'limit.{period}'
    if get_value(conn, key) == str(micros):
        return False
    set_value(conn, key, str(micros))
    return True
