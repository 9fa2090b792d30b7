"""Money is integer micro-USD inside SpendGauge; USD decimal strings only at the edges."""
from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated

from pydantic import Field

from services.core.errors import Invalid

MICROS_PER_USD = 1_000_000


def usd_to_micros(usd: Decimal | int | str) -> int:
    """Round a USD amount half-even to whole micro-USD."""
    try:
        value = Decimal(usd)
    except InvalidOperation:
        raise Invalid(f'not a dollar amount: {usd!r}') from None
    if not value.is_finite():
        raise Invalid(f'not a finite dollar amount: {usd!r}')
    return int((value * MICROS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


@lru_cache(maxsize=8192)  # budget checks format the same few counters thousands of times a second
def micros_to_usd(micros: int) -> str:
    """`7250` -> `'0.007250'`: exact, six decimals, no float on the way."""
    whole, fraction = divmod(abs(micros), MICROS_PER_USD)
    return f'{"-" if micros < 0 else ""}{whole}.{fraction:06d}'


def optional_usd(micros: int | None) -> str | None:
    """`micros_to_usd` of an amount that may be missing (no limit, no threshold): None stays None."""
    return None if micros is None else micros_to_usd(micros)


def money(name: str, micros: int) -> dict[str, int | str]:
    """The pair every API response carries for an amount: `<name>_micros` and `<name>_usd`."""
    return {f'{name}_micros': micros, f'{name}_usd': micros_to_usd(micros)}


MAX_USD = Decimal(1_000_000_000)  # the largest limit, estimate or amount anyone may enter
MAX_MICROS = int(MAX_USD) * MICROS_PER_USD
Usd = Annotated[Decimal, Field(ge=0, le=MAX_USD, allow_inf_nan=False,
                               description='US dollars: a decimal string (exact) or a number')]
"""The USD amount of every API body; narrower bounds nest it: `Annotated[Usd, Field(le=...)]`."""
_GROUPED = re.compile(r'\d{1,3}(,\d{3})+(\.\d*)?')


def parse_usd(value: str | Decimal | int, *, name: str = 'amount', minimum: Decimal = Decimal(0),
              maximum: Decimal = MAX_USD) -> Decimal:
    """A dollar amount as people write it (`12.50`, `$12.50`, `1,250`), exact: never through a float."""
    if isinstance(value, float | bool):
        raise ValueError(f'{name} must be a decimal string or number, not {type(value).__name__}')
    text = str(value).strip().removeprefix('$').strip()
    if ',' in text:
        if not _GROUPED.fullmatch(text):
            raise ValueError(f'{name} must be a dollar amount, got {value!r}')
        text = text.replace(',', '')
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f'{name} must be a dollar amount, got {value!r}') from None
    if not amount.is_finite():
        raise ValueError(f'{name} must be a finite dollar amount, got {value!r}')
    if not minimum <= amount <= maximum:
        raise ValueError(f'{name} must be between {minimum:,} and {maximum:,} dollars, got {value!r}')
    return amount
