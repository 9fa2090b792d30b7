"""An index on usage_events (cost_micros, id): the usage listing sorted by cost (dearest first) pages along it by
the keyset, as the time order pages along (ts, id)

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-04 03:40:00
"""
from collections.abc import Sequence

from alembic import op


revision: str = '0015'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_usage_events_cost_id', 'usage_events', ['cost_micros', 'id'])


def downgrade() -> None:
    op.drop_index('ix_usage_events_cost_id', table_name='usage_events')
