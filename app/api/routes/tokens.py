"""API tokens: created with a role (the token is in the answer, once), listed and revoked. Admin only."""
from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from app.api.deps import ADMIN, Admin, ReadConn, RowId, RuntimeDep
from services.accounts import tokens
from services.accounts.tokens import TokenCreated, TokenOut
from services.core.access import Role

router = APIRouter(prefix='/tokens', tags=['access'])


class TokenIn(BaseModel):
    model_config = ConfigDict(extra='forbid')

    name: str = Field(min_length=1, max_length=100, description='who or what uses it, e.g. litellm-proxy')
    role: Role = Field(description='ingest: record usage and /check; read: every GET; admin: everything')


class TokenList(TypedDict):
    items: list[TokenOut]
    count: int


@router.get('', dependencies=ADMIN)
def list_tokens(conn: ReadConn, include_revoked: bool = False) -> TokenList:
    """Every active token (with `include_revoked`, the revoked ones too); never the tokens themselves."""
    items = tokens.list_tokens(conn, include_revoked)
    return {'items': items, 'count': len(items)}


@router.post('', status_code=201)
def create_token(body: TokenIn, rt: RuntimeDep, actor: Admin) -> TokenCreated:
    """A new token. `token` is shown in this answer only: only its hash is kept."""
    return rt.commands.accounts.create_token(actor, body.role, body.name)


@router.delete('/{token_id}')
def revoke_token(token_id: RowId, rt: RuntimeDep, actor: Admin) -> TokenOut:
    """Revoke a token: it is refused from the next request on, on every instance."""
    return rt.commands.accounts.revoke_token(actor, token_id)
