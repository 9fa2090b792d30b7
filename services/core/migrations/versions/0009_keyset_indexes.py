"""Indexes that serve the usage listing as a keyset: (ts, id), and (filter, ts, id) for agents, sessions and tasks;
sessions by start time

The listing orders by (ts, id) descending and pages with a row-value comparison, so each filter's page is one index
range whatever the depth.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:45:00
"""
from collections.abc import Sequence

from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = {'ix_usage_events_ts_id': ['ts', 'id'], 'ix_usage_events_agent_ts_id': ['agent_id', 'ts', 'id'],
       'ix_usage_events_session_ts_id': ['session_id', 'ts', 'id'], 'ix_usage_events_task_ts_id': ['task_id', 'ts', 'id']}
OLD = {'ix_usage_events_ts': ['ts'], 'ix_usage_events_agent_ts': ['agent_id', 'ts'],
       'ix_usage_events_session_id': ['session_id'], 'ix_usage_events_task_id': ['task_id']}


def upgrade() -> None:
    for name, columns in NEW.items():
        op.create_index(name, 'usage_events', columns)
    for name in OLD:
        op.drop_index(name, table_name='usage_events')
    op.create_index('ix_sessions_started_at', 'sessions', ['started_at'])


def downgrade() -> None:
    op.drop_index('ix_sessions_started_at', table_name='sessions')
    for name, columns in OLD.items():
        op.create_index(name, 'usage_events', columns)
    for name in NEW:
        op.drop_index(name, table_name='usage_events')
