"""audit_log: every state change made by a command, with its actor, target and the state before and after

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 12:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes
from alembic import op


revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'audit_log',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column('before', sa.JSON(), nullable=True),
        sa.Column('after', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_audit_log_at_id', 'audit_log', ['at', 'id'])
    op.create_index('ix_audit_log_actor_at_id', 'audit_log', ['actor', 'at', 'id'])
    op.create_index('ix_audit_log_action_at_id', 'audit_log', ['action', 'at', 'id'])


def downgrade() -> None:
    op.drop_table('audit_log')
