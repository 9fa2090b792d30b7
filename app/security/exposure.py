"""The exposure rule, applied by every way of starting (`spendgauge serve`, `python -m app`, `python main.py`,
Docker): a server reachable from other machines needs authentication and a real session secret."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, inspect, make_url, select

from services.core.db import create_db_engine
from services.core.settings import DEFAULT_STORAGE_SECRET, Settings
from services.core.tables import API_TOKENS, USERS

MIN_SECRET_LENGTH = 16


class UnsafeExposure(RuntimeError):
    """Refusing to listen on a public address without authentication."""


def check_exposure(settings: Settings) -> None:
    if settings.on_loopback:
        return
    if not _has_credentials(settings):
        raise UnsafeExposure(
            f'refusing to listen on {settings.host} without authentication: anyone who can reach it could read and '
            'change budgets. Create an admin (`spendgauge user create NAME --admin`, or SPENDGAUGE_ADMIN_PASSWORD) '
            'and tokens for the agents (`spendgauge token create --role ingest`, or SPENDGAUGE_API_TOKENS), or '
            'listen on 127.0.0.1.')
    secret = settings.storage_secret
    if secret == DEFAULT_STORAGE_SECRET or len(secret) < MIN_SECRET_LENGTH:
        raise UnsafeExposure(
            f'refusing to listen on {settings.host} with the default or a short SPENDGAUGE_STORAGE_SECRET: anyone '
            f'could forge a dashboard session. Set it to {MIN_SECRET_LENGTH}+ random characters '
            '(e.g. `openssl rand -hex 32`).')


def _has_credentials(settings: Settings) -> bool:
    """Tokens or an admin password in the settings, or tokens or users in the database (read without creating or
    migrating it: a refused start leaves nothing behind)."""
    if settings.api_tokens or settings.admin_password:
        return True
    url = make_url(settings.database_url)
    if url.get_backend_name() == 'sqlite' and not (url.database and Path(url.database).is_file()):
        return False
    engine = create_db_engine(settings.database_url)
    try:
        tables = inspect(engine)
        if not (tables.has_table(API_TOKENS.name) and tables.has_table(USERS.name)):
            return False
        with engine.connect() as conn:
            tokens = conn.execute(select(func.count()).select_from(API_TOKENS)
                                  .where(API_TOKENS.c.revoked_at.is_(None))).scalar_one()
            users = conn.execute(select(func.count()).select_from(USERS)).scalar_one()
        return bool(tokens or users)
    finally:
        engine.dispose()
