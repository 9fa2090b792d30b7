"""allocations and allocation_shares: a parent budget split by percent or amount into shares, each enforced by a
policy of origin 'allocation' (policies.allocation_id names its allocation)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 03:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
Text = sqlmodel.sql.sqltypes.AutoString
Time = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        'allocations',
        sa.Column('id', ID, nullable=False),
        sa.Column('name', Text(length=100), nullable=False),
        sa.Column('period', Text(length=16), nullable=False),
        sa.Column('limit_micros', sa.BigInteger(), nullable=False),
        sa.Column('enforce_total', sa.Boolean(), nullable=False),
        sa.Column('soft_percent', sa.Integer(), nullable=False),
        sa.Column('critical_percent', sa.Integer(), nullable=False),
        sa.Column('action', Text(length=16), nullable=False),
        sa.Column('notify', sa.JSON(), nullable=False),
        sa.Column('created_at', Time(), nullable=False),
        sa.Column('updated_at', Time(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_table(
        'allocation_shares',
        sa.Column('id', ID, nullable=False),
        sa.Column('allocation_id', sa.BigInteger(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('scope', Text(length=16), nullable=False),
        sa.Column('scope_value', Text(length=200), nullable=False),
        sa.Column('percent_bp', sa.Integer(), nullable=True),
        sa.Column('amount_micros', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('allocation_id', 'scope', 'scope_value', name='uq_allocation_shares_scope'),
    )
    with op.batch_alter_table('policies') as batch:
        batch.add_column(sa.Column('allocation_id', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM policies WHERE origin = 'allocation'")
    with op.batch_alter_table('policies') as batch:
        batch.drop_column('allocation_id')
    op.drop_table('allocation_shares')
    op.drop_table('allocations')
