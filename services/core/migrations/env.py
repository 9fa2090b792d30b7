"""Alembic environment: runs on the connection handed over by `app.db.upgrade`, or on SPENDGAUGE_DATABASE_URL."""
from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

from services.core import models  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                      render_as_batch=connection.dialect.name == 'sqlite')
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get('connection')
if connection is not None:
    _run(connection)
else:
    from services.core.db import create_db_engine
    from services.core.settings import get_settings

    with create_db_engine(get_settings().database_url).begin() as conn:
        _run(conn)
