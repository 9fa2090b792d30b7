"""The migrations build exactly the schema the models declare, on SQLite and PostgreSQL."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine
from sqlmodel import SQLModel

import services.core.models  # noqa: F401  # the tables, on SQLModel.metadata
from services.core.db import upgrade


def test_migrations_match_the_models(engine: Engine) -> None:
    upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={'compare_type': False})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []
