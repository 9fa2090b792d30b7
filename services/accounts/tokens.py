"""API tokens: random bearer tokens with one role. The database keeps only a SHA-256 of each (the tokens are
256-bit random, so a fast hash is enough); the token itself is shown once, when it is created."""
from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select, update
from typing_extensions import TypedDict

from services.core.access import Role
from services.core.errors import NotFound
from services.core.tables import API_TOKENS

TOKEN_PREFIX = 'sg_'


class TokenOut(TypedDict):
    id: int
    name: str
    role: Role
    prefix: str  # the first characters of the token, to recognise it
    created_at: str
    created_by: str
    revoked: bool


class TokenCreated(TokenOut):
    token: str  # shown this once; only its hash is stored


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(conn: Connection, name: str, role: Role, created_by: str) -> TokenCreated:
    token = new_token()
    now, prefix = datetime.now(UTC), token[:10]
    values = {'name': name, 'role': role.value, 'token_hash': token_hash(token), 'prefix': prefix,
              'created_at': now, 'created_by': created_by}
    token_id = conn.execute(insert(API_TOKENS).values(**values).returning(API_TOKENS.c.id)).scalar_one()
    return {'id': token_id, 'name': name, 'role': role, 'prefix': prefix,
            'created_at': now.isoformat(), 'created_by': created_by, 'revoked': False, 'token': token}


def list_tokens(conn: Connection, include_revoked: bool = False) -> list[TokenOut]:
    query = select(API_TOKENS).order_by(API_TOKENS.c.id)
    if not include_revoked:
        query = query.where(API_TOKENS.c.revoked_at.is_(None))
    return [{'id': r.id, 'name': r.name, 'role': Role(r.role), 'prefix': r.prefix,
             'created_at': r.created_at.isoformat(), 'created_by': r.created_by,
             'revoked': r.revoked_at is not None} for r in conn.execute(query)]


def revoke(conn: Connection, token_id: int) -> TokenOut:
    """Revoke an active token (404 when there is none with this id)."""
    changed = conn.execute(update(API_TOKENS).where(API_TOKENS.c.id == token_id, API_TOKENS.c.revoked_at.is_(None))
                           .values(revoked_at=datetime.now(UTC))).rowcount
    if not changed:
        raise NotFound(f'token_id: no active token {token_id}')
    return next(t for t in list_tokens(conn, include_revoked=True) if t['id'] == token_id)


def active(conn: Connection) -> dict[str, tuple[int, str, Role]]:
    """Hash -> (id, name, role) of every token not revoked."""
    query = select(API_TOKENS.c.token_hash, API_TOKENS.c.id, API_TOKENS.c.name, API_TOKENS.c.role) \
        .where(API_TOKENS.c.revoked_at.is_(None))
    return {r.token_hash: (r.id, r.name, Role(r.role)) for r in conn.execute(query)}
