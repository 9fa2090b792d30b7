"""price_data and price_audits: genai-prices data fetched by `prices update`, and the audit of each re-pricing

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes
from alembic import op


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'price_data',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('fetched_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('fetched_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('size_bytes', sa.BigInteger(), nullable=False),
        sa.Column('models', sa.Integer(), nullable=False),
        sa.Column('data', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'price_audits',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('range_start', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('range_end', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('price_data', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('events_examined', sa.BigInteger(), nullable=False),
        sa.Column('events_changed', sa.BigInteger(), nullable=False),
        sa.Column('events_newly_priced', sa.BigInteger(), nullable=False),
        sa.Column('events_kept', sa.BigInteger(), nullable=False),
        sa.Column('before_micros', sa.BigInteger(), nullable=False),
        sa.Column('after_micros', sa.BigInteger(), nullable=False),
        sa.Column('by_model', sa.JSON(), nullable=False),
        sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('price_audits')
    op.drop_table('price_data')
