"""Who may use SpendGauge: API tokens (`token create|list|revoke`) and dashboard users (`user create|list|delete|
password`). These work on the database itself (--db, or the configured one), so the first admin and the first token
can be made before anyone can log in; a running server hears of each change."""
from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.cli.backends import CLI_ACTOR, CliError
from app.cli.output import table
from services.core.access import Role


def register(sub: Any) -> None:
    token = sub.add_parser('token', help='create, list or revoke API tokens (on the database directly)')
    actions = token.add_subparsers(dest='token_command', required=True)
    create = actions.add_parser('create', help='a new token with a role; printed once, only its hash is kept')
    create.add_argument('--role', required=True, choices=[r.value for r in Role],
                        help='ingest: record usage and /check; read: every GET; admin: everything')
    create.add_argument('--name', help='who or what uses it (default: the role)')
    listing = actions.add_parser('list', help='the active tokens (--all: revoked ones too); never the tokens')
    listing.add_argument('--all', action='store_true')
    revoke = actions.add_parser('revoke', help='revoke a token by its id (from `token list`)')
    revoke.add_argument('token_id', type=int)
    for parser, run in ((create, cmd_token_create), (listing, cmd_token_list), (revoke, cmd_token_revoke)):
        _db_option(parser)
        parser.set_defaults(run_alone=run)

    user = sub.add_parser('user', help='create, list or delete dashboard users, or set a password')
    actions = user.add_subparsers(dest='user_command', required=True)
    create = actions.add_parser('create', help='a dashboard user; the password is asked for (or read from stdin)')
    create.add_argument('name', nargs='?', default='admin', help='user name (default admin)')
    roles = create.add_mutually_exclusive_group(required=True)
    roles.add_argument('--admin', action='store_const', dest='role', const=Role.ADMIN, help='may change everything')
    roles.add_argument('--read-only', action='store_const', dest='role', const=Role.READ,
                       help='sees everything, changes nothing')
    _password_option(create)
    listing = actions.add_parser('list', help='every dashboard user')
    delete = actions.add_parser('delete', help='delete a user (not the last admin)')
    delete.add_argument('name')
    password = actions.add_parser('password', help="set a user's password (logs out their sessions)")
    password.add_argument('name')
    _password_option(password)
    for parser, run in ((create, cmd_user_create), (listing, cmd_user_list), (delete, cmd_user_delete),
                        (password, cmd_user_password)):
        _db_option(parser)
        parser.set_defaults(run_alone=run)


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--db', help='database URL (default: the configured one)')


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--password-stdin', action='store_true',
                        help='read the password from the first line of stdin instead of asking')


@contextmanager
def _runtime(db: str | None, creates: bool = False) -> Iterator[Any]:
    from app.cli.direct import DirectBackend

    backend = DirectBackend(db, creates)  # the database itself; closing tells a running server on it
    try:
        yield backend.rt
    finally:
        backend.close()


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip('\r\n')
    if not sys.stdin.isatty():
        raise CliError('no terminal to ask for the password: pass --password-stdin and pipe it in', 2)
    first = getpass.getpass('Password: ')
    if first != getpass.getpass('Again: '):
        raise CliError('the passwords differ', 2)
    return first


def cmd_token_create(args: argparse.Namespace) -> int:
    with _runtime(args.db, creates=True) as rt:
        created = rt.commands.accounts.create_token(CLI_ACTOR, Role(args.role), args.name or args.role)
    print(f'created token {created["id"]} ({created["name"]}, {created["role"]}); it is shown only now:',
          file=sys.stderr)
    print(created['token'])
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from services.accounts import tokens

    with _runtime(args.db) as rt:
        items = rt.read(tokens.list_tokens, args.all)
    rows = [{**item, 'prefix': item['prefix'] + '…', 'created_at': item['created_at'][:16].replace('T', ' '),
             'revoked': 'yes' if item['revoked'] else ''} for item in items]
    columns = ['id', 'name', 'role', 'prefix', 'created_at', 'created_by'] + (['revoked'] if args.all else [])
    print(table(rows, columns, empty='(no tokens)'))
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    with _runtime(args.db) as rt:
        revoked = rt.commands.accounts.revoke_token(CLI_ACTOR, args.token_id)
    print(f'revoked token {revoked["id"]} ({revoked["name"]})')
    return 0


def cmd_user_create(args: argparse.Namespace) -> int:
    password = _password(args)
    with _runtime(args.db, creates=True) as rt:
        user = rt.commands.accounts.create_user(CLI_ACTOR, args.name, password, args.role)
    print(f'created {"admin" if user["role"] is Role.ADMIN else "read-only user"} {user["name"]}')
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    from services.accounts import users

    with _runtime(args.db) as rt:
        items = rt.read(users.list_users)
    rows = [{**item, 'created_at': item['created_at'][:16].replace('T', ' ')} for item in items]
    print(table(rows, ['name', 'role', 'created_at'], empty='(no users)'))
    return 0


def cmd_user_delete(args: argparse.Namespace) -> int:
    with _runtime(args.db) as rt:
        user = rt.commands.accounts.delete_user(CLI_ACTOR, args.name)
    print(f'deleted {user["name"]}')
    return 0


def cmd_user_password(args: argparse.Namespace) -> int:
    password = _password(args)
    with _runtime(args.db) as rt:
        user = rt.commands.accounts.set_password(CLI_ACTOR, args.name, password)
    print(f'set the password of {user["name"]}; their sessions are logged out')
    return 0
