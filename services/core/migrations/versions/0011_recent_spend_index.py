"""The (ts, id) index of usage_events carries cost_micros too: the forecast's recent slices and the crossing it pins
sum the cost of the last minutes' events from the index alone, without a table lookup per event (at 5M events, 3,500
lookups took 8 ms of each dashboard reload)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 17:40:00
"""
from collections.abc import Sequence

from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_usage_events_ts_id_cost', 'usage_events', ['ts', 'id', 'cost_micros'])
    op.drop_index('ix_usage_events_ts_id', table_name='usage_events')


def downgrade() -> None:
    op.create_index('ix_usage_events_ts_id', 'usage_events', ['ts', 'id'])
    op.drop_index('ix_usage_events_ts_id_cost', table_name='usage_events')
