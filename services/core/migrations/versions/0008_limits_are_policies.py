"""The day, week and month limits become global policies of origin 'limit' (they were `limit.*` settings rows)

A limit set at run time replaces the environment's policy of its period, as it does from now on.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 04:00:00
"""
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAMES = {'day': 'Daily budget', 'week': 'Weekly budget', 'month': 'Monthly budget'}
Time = sqlmodel.sql.sqltypes.UTCDateTime
settings = sa.table('settings', sa.column('key', sa.String), sa.column('value', sa.String),
                    sa.column('updated_at', Time))
policies = sa.table('policies', *(sa.column(name) for name in (
    'id', 'name', 'scope', 'scope_value', 'period', 'period_start', 'period_end', 'limit_micros', 'soft_percent',
    'critical_percent', 'action', 'auto_eco', 'auto_pause', 'enabled', 'origin')),
    sa.column('notify', sa.JSON), sa.column('created_at', Time), sa.column('updated_at', Time))


def upgrade() -> None:
    conn = op.get_bind()
    now = datetime.now(UTC)
    for period, name in NAMES.items():
        value = conn.execute(sa.select(settings.c.value).where(settings.c.key == f'limit.{period}')).scalar()
        if value is None:
            continue
        conn.execute(policies.delete().where(policies.c.origin == 'env', policies.c.scope == 'global',
                                             policies.c.period == period))
        conn.execute(sa.insert(policies).values(
            name=name, scope='global', scope_value=None, period=period, period_start=None, period_end=None,
            limit_micros=int(value), soft_percent=80, critical_percent=95, action='block',
            notify=[], auto_eco=False, auto_pause=False, enabled=True,
            origin='limit', created_at=now, updated_at=now))
        conn.execute(settings.delete().where(settings.c.key == f'limit.{period}'))


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(policies.c.period, policies.c.limit_micros)
                        .where(policies.c.origin == 'limit', policies.c.enabled.is_(True))).all()
    for period, micros in rows:
        conn.execute(sa.insert(settings).values(key=f'limit.{period}', value=str(micros), updated_at=datetime.now(UTC)))
    conn.execute(policies.delete().where(policies.c.origin == 'limit'))
