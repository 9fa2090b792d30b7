"""Tokens and users at rest and in the directory, on both databases: tokens only as hashes, passwords as argon2id,
roles as given, revocation and deletion seen at once, sessions ended by a new password."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from services.accounts import throttle, tokens, users
from services.accounts.directory import Directory
from services.commands import CommandContext, Commands
from services.core.access import SYSTEM, Actor, Role
from services.core.errors import Conflict, Forbidden, Invalid, NotFound
from services.core.tables import API_TOKENS, USERS
from services.live.hub import EventHub

PASSWORD = 'correct horse battery'


@pytest.fixture
def commands(engine: Engine, hub: EventHub) -> Commands:
    return Commands(CommandContext(engine, hub))


@pytest.fixture
def directory(engine: Engine, hub: EventHub) -> Directory:
    return Directory(engine, ('env-token-' + 'x' * 20,), hub)


def test_a_token_is_stored_only_as_its_hash(engine: Engine, commands: Commands, directory: Directory) -> None:
    created = commands.accounts.create_token(SYSTEM, Role.INGEST, 'agents')
    assert created['token'].startswith('sg_') and len(created['token']) > 40
    with engine.connect() as conn:
        stored = conn.execute(select(API_TOKENS)).one()
    assert created['token'] not in {str(v) for v in stored}
    assert stored.token_hash == tokens.token_hash(created['token'])
    assert directory.token_actor(created['token']) == Actor('token agents', Role.INGEST)
    assert directory.token_actor(created['token'] + 'x') is None
    assert directory.token_actor('env-token-' + 'x' * 20) == Actor('env token', Role.ADMIN)


def test_revoking_is_seen_at_once(commands: Commands, directory: Directory) -> None:
    created = commands.accounts.create_token(SYSTEM, Role.READ, 'grafana')
    assert directory.token_actor(created['token']) is not None
    commands.accounts.revoke_token(SYSTEM, created['id'])
    assert directory.token_actor(created['token']) is None
    with pytest.raises(NotFound):
        commands.accounts.revoke_token(SYSTEM, created['id'])


def test_passwords_are_argon2id_and_checked(engine: Engine, commands: Commands, directory: Directory) -> None:
    commands.accounts.create_user(SYSTEM, 'ada', PASSWORD, Role.ADMIN)
    with engine.connect() as conn:
        digest = conn.execute(select(USERS.c.password_hash)).scalar_one()
    assert digest.startswith('$argon2id$') and PASSWORD not in digest
    assert directory.login('ada', PASSWORD) == Actor('ada', Role.ADMIN)
    assert directory.login('ada', PASSWORD + ' ') is None
    assert directory.login('nobody', PASSWORD) is None
    assert directory.login('ada', 'x' * 100_000) is None  # no megabyte hashing


@pytest.mark.parametrize('password', ['short', 'x' * 1001])
def test_weak_or_huge_passwords_are_refused(commands: Commands, password: str) -> None:
    with pytest.raises(Invalid, match='password'):
        commands.accounts.create_user(SYSTEM, 'ada', password, Role.ADMIN)


def test_only_admins_manage_access(commands: Commands) -> None:
    reader = Actor('reed', Role.READ)
    for change in (lambda: commands.accounts.create_token(reader, Role.ADMIN, 'mine'),
                   lambda: commands.accounts.create_user(reader, 'eve', PASSWORD, Role.ADMIN),
                   lambda: commands.accounts.delete_user(reader, 'ada')):
        with pytest.raises(Forbidden):
            change()
    commands.accounts.create_user(SYSTEM, 'reed', PASSWORD, Role.READ)
    commands.accounts.set_password(reader, 'reed', 'another long one')  # their own
    commands.accounts.create_user(SYSTEM, 'ada', PASSWORD, Role.ADMIN)
    with pytest.raises(Forbidden):
        commands.accounts.set_password(reader, 'ada', 'taken over now')


def test_the_last_admin_stays(commands: Commands) -> None:
    commands.accounts.create_user(SYSTEM, 'ada', PASSWORD, Role.ADMIN)
    with pytest.raises(Conflict, match='last admin'):
        commands.accounts.delete_user(SYSTEM, 'ada')
    commands.accounts.create_user(SYSTEM, 'bob', PASSWORD, Role.ADMIN)
    commands.accounts.delete_user(SYSTEM, 'ada')
    with pytest.raises(Conflict, match='exists'):
        commands.accounts.create_user(SYSTEM, 'bob', PASSWORD, Role.READ)


def test_a_new_password_ends_older_sessions(commands: Commands, directory: Directory) -> None:
    commands.accounts.create_user(SYSTEM, 'ada', PASSWORD, Role.ADMIN)
    logged_in = datetime.now(UTC)
    assert directory.session_actor('ada', logged_in) == Actor('ada', Role.ADMIN)
    commands.accounts.set_password(SYSTEM, 'ada', 'a brand new password')
    assert directory.session_actor('ada', logged_in) is None
    assert directory.session_actor('ada', datetime.now(UTC) + timedelta(seconds=1)) is not None
    commands.accounts.create_user(SYSTEM, 'bob', PASSWORD, Role.ADMIN)
    commands.accounts.delete_user(SYSTEM, 'ada')
    assert directory.session_actor('ada', datetime.now(UTC) + timedelta(seconds=1)) is None


def test_secured_once_any_token_or_user_exists(engine: Engine, hub: EventHub, commands: Commands) -> None:
    open_door = Directory(engine, (), hub)
    assert not open_door.secured
    commands.accounts.create_user(SYSTEM, 'ada', PASSWORD, Role.READ)
    assert open_door.secured and open_door.has_users
    assert Directory(engine, ('t' * 20,), hub).secured


def test_ensure_admin_creates_once(engine: Engine, commands: Commands) -> None:
    assert commands.accounts.ensure_admin('admin', PASSWORD) is not None
    assert commands.accounts.ensure_admin('admin', 'a different password') is None
    with engine.connect() as conn:
        assert [u['name'] for u in users.list_users(conn)] == ['admin']


def test_the_throttle_locks_a_name_after_repeated_failures() -> None:
    guard = throttle.LoginThrottle()
    for _ in range(throttle.MAX_FAILURES - 1):
        guard.failed('ada')
    assert guard.locked_for('ada') == 0
    guard.failed('ada')
    assert 0 < guard.locked_for('ada') <= throttle.LOCK_S
    assert guard.locked_for('bob') == 0
    guard.succeeded('ada')
    assert guard.locked_for('ada') == 0
