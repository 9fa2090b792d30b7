"""parse_usd: dollar amounts as people write them, exact, within range."""
from __future__ import annotations

from decimal import Decimal

import pytest

from services.core.money import MAX_USD, parse_usd


@pytest.mark.parametrize(('value', 'expected'), [
    ('12.50', Decimal('12.50')), (' $1,250.10 ', Decimal('1250.10')), ('$ 3', Decimal(3)), ('0.1', Decimal('0.1')),
    ('1,000,000', Decimal(1_000_000)), (Decimal('2.25'), Decimal('2.25')), (7, Decimal(7)), ('1e3', Decimal('1e3')),
])
def test_parse_usd(value: str | Decimal | int, expected: Decimal) -> None:
    parsed = parse_usd(value)
    assert parsed == expected and str(parsed) == str(expected)


@pytest.mark.parametrize(('value', 'message'), [
    ('cheap', "limit must be a dollar amount, got 'cheap'"), ('', 'limit must be a dollar amount'),
    ('1,00', 'limit must be a dollar amount'), ('$$1', 'limit must be a dollar amount'),
    ('NaN', 'limit must be a finite dollar amount'), ('-Infinity', 'limit must be a finite'),
    ('-0.01', 'limit must be between 0 and 1,000,000,000 dollars'), (MAX_USD + 1, 'limit must be between'),
    (0.1, 'limit must be a decimal string or number, not float'),
])
def test_parse_usd_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match='^' + message.replace('$', r'\$')):
        parse_usd(value, name='limit')  # type: ignore[arg-type]  # a float among them, on purpose


def test_parse_usd_range() -> None:
    assert parse_usd('5', minimum=Decimal(5), maximum=Decimal(5)) == 5
    with pytest.raises(ValueError, match='amount must be between 1 and 2 dollars'):
        parse_usd('3', minimum=Decimal(1), maximum=Decimal(2))
