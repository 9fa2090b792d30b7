"""API tokens and dashboard users: created, revoked and deleted by admins; a user may change their own password."""
from __future__ import annotations

from services.accounts import tokens, users
from services.accounts.tokens import TokenCreated, TokenOut
from services.accounts.users import UserOut
from services.commands.base import CommandContext
from services.core.access import SYSTEM, Actor, Role, require
from services.core.errors import Forbidden
from services.live.topics import AccountsChanged


class AccountCommands:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx

    def create_token(self, actor: Actor, role: Role, name: str) -> TokenCreated:
        """A new token with this role; the answer holds the token, which is not stored and not shown again."""
        require(actor, Role.ADMIN, 'creating a token')
        with self.ctx.audited(actor, 'accounts.create_token', f'token:{name}') as (conn, entry):
            created = tokens.create(conn, users.checked_name(name), Role(role), actor.name)
            entry.after = created  # its `token` is masked in the trail
        self.ctx.publish(AccountsChanged('token created'))
        return created

    def revoke_token(self, actor: Actor, token_id: int) -> TokenOut:
        require(actor, Role.ADMIN, 'revoking a token')
        with self.ctx.audited(actor, 'accounts.revoke_token', f'token:{token_id}') as (conn, entry):
            entry.before = next((t for t in tokens.list_tokens(conn, include_revoked=True) if t['id'] == token_id),
                                None)
            revoked = entry.after = tokens.revoke(conn, token_id)
        self.ctx.publish(AccountsChanged('token revoked'))
        return revoked

    def create_user(self, actor: Actor, name: str, password: str, role: Role) -> UserOut:
        require(actor, Role.ADMIN, 'creating a user')
        with self.ctx.audited(actor, 'accounts.create_user', f'user:{name}') as (conn, entry):
            user = entry.after = users.create(conn, name, password, Role(role))
        self.ctx.publish(AccountsChanged('user created'))
        return user

    def delete_user(self, actor: Actor, name: str) -> UserOut:
        require(actor, Role.ADMIN, 'deleting a user')
        with self.ctx.audited(actor, 'accounts.delete_user', f'user:{name}') as (conn, entry):
            user = entry.before = users.delete_user(conn, name)
        self.ctx.publish(AccountsChanged('user deleted'))
        return user

    def set_password(self, actor: Actor, name: str, password: str) -> UserOut:
        """Admins set anyone's password; others only their own."""
        if actor.name != name and not actor.may(Role.ADMIN):
            raise Forbidden(f"changing another user's password needs the admin role; {actor.name} has {actor.role}")
        with self.ctx.audited(actor, 'accounts.set_password', f'user:{name}') as (conn, entry):
            entry.before = users.get(conn, name)  # the password itself never enters the trail
            user = entry.after = users.set_password(conn, name, password)
        self.ctx.publish(AccountsChanged('password changed'))
        return user

    def ensure_admin(self, name: str, password: str) -> UserOut | None:
        """SPENDGAUGE_ADMIN_PASSWORD: create this admin on start-up unless a user of that name exists."""
        with self.ctx.audited(SYSTEM, 'accounts.ensure_admin', f'user:{name}') as (conn, entry):
            if users.credentials(conn, name) is not None:
                entry.unchanged()
                return None
            user = entry.after = users.create(conn, name, password, Role.ADMIN)
        self.ctx.publish(AccountsChanged('user created'))
        return user
