"""Every price kind: usage_events.kind and .units (audio and image tokens, audio seconds, characters, images), and
price overrides per call, per minute of audio and per image by size and quality

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # nullable columns without defaults: PostgreSQL and SQLite add them without rewriting the table
    with op.batch_alter_table('usage_events') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=24), nullable=True))
        batch.add_column(sa.Column('units', sa.JSON(), nullable=True))
    with op.batch_alter_table('price_overrides') as batch:
        batch.add_column(sa.Column('request_micros', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('audio_micros_per_minute', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('image_micros', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('price_overrides') as batch:
        batch.drop_column('image_micros')
        batch.drop_column('audio_micros_per_minute')
        batch.drop_column('request_micros')
    with op.batch_alter_table('usage_events') as batch:
        batch.drop_column('units')
        batch.drop_column('kind')
