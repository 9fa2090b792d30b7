"""policies.auto_pause: pause the agent when it reaches the limit

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 19:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('policies') as batch:
        batch.add_column(sa.Column('auto_pause', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('policies') as batch:
        batch.drop_column('auto_pause')
