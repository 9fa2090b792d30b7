"""Price overrides and the models we could not price."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field, StringConstraints

from app.api.deps import READ, Admin, ReadConn, RuntimeDep
from app.api.errors import refusals
from services.core.inputs import NO_NUL, Input
from services.core.money import Usd
from services.usage import price_overrides
from services.usage.price_overrides import OverrideDeleted, OverrideList, OverrideOut, UnpricedList

router = APIRouter(prefix='/prices', tags=['prices'])
UsdPerMtok = Annotated[Usd, Field(le=1_000_000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)]


class OverrideIn(Input):
    provider: Name
    model: Name
    input_usd_per_mtok: UsdPerMtok
    output_usd_per_mtok: UsdPerMtok
    cache_read_usd_per_mtok: UsdPerMtok | None = Field(default=None, description='defaults to the input price')
    cache_write_usd_per_mtok: UsdPerMtok | None = Field(default=None, description='defaults to the input price')


@router.get('', dependencies=READ)
def list_overrides(conn: ReadConn) -> OverrideList:
    """Our own prices, applied before genai-prices."""
    items = price_overrides.list_overrides(conn)
    return {'items': items, 'count': len(items)}


@router.put('', responses=refusals(e503='No pricer runs in this process'))
def put_override(body: OverrideIn, rt: RuntimeDep, actor: Admin) -> OverrideOut:
    """Create or replace the price of a provider/model (USD per million tokens). Events already stored as
    unpriced for that model are priced with it (`repriced_events`)."""
    return rt.commands.prices.put(actor, body.provider, body.model, {
        'input': body.input_usd_per_mtok, 'output': body.output_usd_per_mtok,
        'cache_read': body.cache_read_usd_per_mtok, 'cache_write': body.cache_write_usd_per_mtok})


@router.delete('', responses=refusals(e404='No override for that provider/model',
                                          e503='No pricer runs in this process'))
def delete_override(provider: Annotated[str, Query(min_length=1, max_length=200)],
                    model: Annotated[str, Query(min_length=1, max_length=200)],
                    rt: RuntimeDep, actor: Admin) -> OverrideDeleted:
    """Remove an override; the model goes back to genai-prices."""
    rt.commands.prices.remove(actor, provider, model)
    return {'deleted': True, 'provider': provider.lower(), 'model': model}


@router.get('/unpriced', dependencies=READ)
def unpriced(conn: ReadConn) -> UnpricedList:
    """Models seen without a known price: their calls are stored with cost_source=unpriced, never a silent $0."""
    items = price_overrides.unpriced(conn)
    return {'items': items, 'count': len(items)}
