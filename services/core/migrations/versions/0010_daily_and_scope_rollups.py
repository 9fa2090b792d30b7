"""spend_hourly (per hour and channel), spend_daily (per local day), spend_scope_rollups (per hour and user, project, tag or session) and
session_scope_spend (per session and user, project, tag, provider or model), filled from what is recorded, so every
total and every policy counter reads rollups, never a scan of events

The daily rows are keyed by UTC days here; the server re-keys them when its time zone is another
(services/spend/day_zone.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 11:00:00
"""
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MEASURES = ('input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_tokens', 'cost_micros')
Text = sqlmodel.sql.sqltypes.AutoString


def _measures() -> list[sa.Column]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in (*MEASURES, 'requests')]


def upgrade() -> None:
    op.create_table(
        'spend_hourly',
        sa.Column('hour', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('channel', Text(length=16), nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint('hour', 'channel'),
    )
    op.create_table(
        'spend_daily',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('agent_id', Text(length=200), nullable=False),
        sa.Column('provider', Text(length=100), nullable=False),
        sa.Column('model', Text(length=200), nullable=False),
        sa.Column('channel', Text(length=16), nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint('day', 'agent_id', 'provider', 'model', 'channel'),
    )
    op.create_table(
        'spend_scope_rollups',
        sa.Column('scope', Text(length=16), nullable=False),
        sa.Column('hour', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('value', Text(length=200), nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint('scope', 'hour', 'value'),
    )
    op.create_table(
        'session_scope_spend',
        sa.Column('session_id', Text(length=200), nullable=False),
        sa.Column('scope', Text(length=16), nullable=False),
        sa.Column('value', Text(length=200), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False)
          for name in ('input_tokens', 'output_tokens', 'cost_micros', 'requests')),
        sa.PrimaryKeyConstraint('session_id', 'scope', 'value'),
    )
    sqlite = op.get_bind().dialect.name == 'sqlite'
    sums = ', '.join(f'SUM({name})' for name in MEASURES)
    day = 'date(hour)' if sqlite else 'CAST(hour AS DATE)'
    keys = 'agent_id, provider, model, channel'
    op.execute(f'INSERT INTO spend_daily (day, {keys}, {", ".join(MEASURES)}, requests) '
               f'SELECT {day}, {keys}, {sums}, SUM(requests) FROM spend_rollups GROUP BY {day}, {keys}')
    op.execute(f'INSERT INTO spend_hourly (hour, channel, {", ".join(MEASURES)}, requests) '
               f'SELECT hour, channel, {sums}, SUM(requests) FROM spend_rollups GROUP BY hour, channel')
    hour = "strftime('%Y-%m-%d %H:00:00.000000', ts)" if sqlite else "date_trunc('hour', ts)"
    columns = f'scope, hour, value, {", ".join(MEASURES)}, requests'
    for scope, column in (('user', 'user_id'), ('project', 'project'), ('session', 'session_id')):
        op.execute(f"INSERT INTO spend_scope_rollups ({columns}) SELECT '{scope}', {hour}, {column}, {sums}, COUNT(*) "
                   f"FROM usage_events WHERE {column} IS NOT NULL AND {column} <> '' GROUP BY {hour}, {column}")
    tags = ('SELECT DISTINCT usage_events.id AS id, tag.value AS tag FROM usage_events, json_each(usage_events.tags) '
            'AS tag' if sqlite else
            'SELECT DISTINCT usage_events.id AS id, tag AS tag FROM usage_events, '
            'json_array_elements_text(usage_events.tags) AS tag')
    op.execute(f"INSERT INTO spend_scope_rollups ({columns}) SELECT 'tag', {hour}, tagged.tag, {sums}, COUNT(*) "
               f'FROM usage_events JOIN ({tags}) AS tagged ON tagged.id = usage_events.id '
               f"WHERE tagged.tag <> '' GROUP BY {hour}, tagged.tag")
    columns = 'session_id, scope, value, input_tokens, output_tokens, cost_micros, requests'
    sums = 'SUM(input_tokens), SUM(output_tokens), SUM(cost_micros), COUNT(*)'
    for scope, column in (('user', 'user_id'), ('project', 'project'), ('provider', 'provider'), ('model', 'model')):
        op.execute(f"INSERT INTO session_scope_spend ({columns}) SELECT session_id, '{scope}', {column}, {sums} "
                   f"FROM usage_events WHERE session_id IS NOT NULL AND session_id <> '' AND {column} IS NOT NULL "
                   f"AND {column} <> '' GROUP BY session_id, {column}")
    op.execute(f"INSERT INTO session_scope_spend ({columns}) SELECT session_id, 'tag', tagged.tag, {sums} "
               f'FROM usage_events JOIN ({tags}) AS tagged ON tagged.id = usage_events.id '
               f"WHERE session_id IS NOT NULL AND session_id <> '' AND tagged.tag <> '' GROUP BY session_id, tagged.tag")
    settings = sa.table('settings', sa.column('key', sa.String), sa.column('value', sa.String),
                        sa.column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime))
    op.execute(settings.delete().where(settings.c.key == 'rollups.day_zone'))
    op.bulk_insert(settings, [{'key': 'rollups.day_zone', 'value': 'UTC', 'updated_at': datetime.now(UTC)}])


def downgrade() -> None:
    op.execute("DELETE FROM settings WHERE key = 'rollups.day_zone'")
    op.drop_table('session_scope_spend')
    op.drop_table('spend_scope_rollups')
    op.drop_table('spend_daily')
    op.drop_table('spend_hourly')
