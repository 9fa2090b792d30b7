"""The day, week and month limits as global policies: stored limits carried over by migration 0008, and the limits
from the environment re-synced on start without losing a policy's id."""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, insert

from services.budget import limits, policies
from services.core import stored
from services.core.db import MIGRATIONS_DIR, create_db_engine, upgrade
from services.core.errors import Invalid
from services.core.tables import POLICIES, SETTINGS
from tests.conftest import fresh_postgres_engine, postgres_url


@pytest.fixture(params=['sqlite', 'postgresql'])
def at_0007(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database at revision 0007, as the previous release left it."""
    engine = create_db_engine(f'sqlite:///{tmp_path / "old.db"}') if request.param == 'sqlite' \
        else fresh_postgres_engine(postgres_url())
    config = Config()
    config.set_main_option('script_location', str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes['connection'] = connection
        command.upgrade(config, '0007')
    yield engine
    engine.dispose()


def test_migration_moves_the_stored_limits_into_policies(at_0007: Engine) -> None:
    now = datetime.now(UTC)
    with at_0007.begin() as conn:
        conn.execute(insert(SETTINGS), [{'key': 'limit.day', 'value': '2500000', 'updated_at': now},
                                        {'key': 'limit.month', 'value': '90000000', 'updated_at': now}])
        policy = policies.validate({'name': 'day budget (DAILY_BUDGET_LIMIT)', 'limit_usd': '7', 'action': 'block'})
        conn.execute(insert(POLICIES).values(**policy.row(), origin='env', created_at=now, updated_at=now))
    upgrade(at_0007)
    with at_0007.connect() as conn:
        found = {(p.name, p.period, p.origin, p.limit_micros, p.action, p.soft_percent, p.critical_percent)
                 for p in policies.list_policies(conn)}
        assert found == {('Daily budget', 'day', 'limit', 2_500_000, 'block', 80, 95),
                         ('Monthly budget', 'month', 'limit', 90_000_000, 'block', 80, 95)}, \
            'the stored daily limit replaces the environment one, as it does at run time'
        assert stored.get_value(conn, 'limit.day') is None
        assert (limits.get_limit(conn, 'day'), limits.get_limit(conn, 'week')) == (2_500_000, None)


def test_environment_limits_keep_their_policy_and_follow_the_environment(engine: Engine) -> None:
    with engine.begin() as conn:
        limits.sync_environment(conn, {'day': 5_000_000, 'week': 20_000_000}, 'block')
        first = {p.period: p for p in policies.list_policies(conn)}
    with engine.begin() as conn:
        limits.sync_environment(conn, {'day': 6_000_000}, 'throttle')
        second = {p.period: p for p in policies.list_policies(conn)}
    assert set(second) == {'day'} and second['day'].id == first['day'].id
    assert (second['day'].limit_micros, second['day'].action, second['day'].origin) == (6_000_000, 'throttle', 'env')


@pytest.mark.parametrize(('period', 'micros', 'action', 'message'), [
    ('year', 1, None, 'period must be one of day, week, month'),
    ('day', -1, None, 'limit must be between $0'),
    ('day', 1, 'ignore', 'action must be one of warn, throttle, block'),
])
def test_a_bad_limit_is_refused_and_nothing_is_stored(engine: Engine, period: str, micros: int,
                                                      action: str | None, message: str) -> None:
    with engine.begin() as conn, pytest.raises(Invalid, match=re.escape(message)):
        limits.set_limit(conn, period, micros, action)
    with engine.connect() as conn:
        assert policies.list_policies(conn) == []
