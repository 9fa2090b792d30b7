"""One display rule for money: places by the largest amount shown together, parts that add up as displayed."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.core import display
from services.core.display import apportion, format_shares, format_usd, format_usd_all, format_usd_sum, usd_places

AMOUNTS = st.integers(min_value=0, max_value=50_000_000)  # up to $50


def dollars(text: str) -> Decimal:
    return Decimal(text.replace('$', '').replace(',', ''))


def test_two_places_from_a_dollar_four_below() -> None:
    assert [format_usd(m) for m in (0, 4_400, 7_250, 300_000, 999_999, 1_000_000, 1_250_000_000, -500_000)] == \
        ['$0.00', '$0.0044', '$0.0073', '$0.3000', '$1.0000', '$1.00', '$1,250.00', '-$0.5000']
    assert usd_places() == 2 and usd_places(0, 0) == 2 and usd_places(4_400, 1_000_000) == 2


def test_amounts_shown_together_share_their_places() -> None:
    assert format_usd_all([3_240_000, 763_100, 529_000]) == ['$3.24', '$0.76', '$0.53']
    assert format_usd_all([4_400, 10_000, 14_400]) == ['$0.0044', '$0.0100', '$0.0144']
    assert format_usd_all([]) == []


def test_the_strip_adds_up_as_displayed() -> None:
    # each part alone rounds to $1.95 and $1.25, which would show a $3.20 sum beside the $3.19 total
    assert [format_usd(1_946_000), format_usd(1_246_000), format_usd(3_192_000)] == ['$1.95', '$1.25', '$3.19']
    assert display.channel_text(1_946_000, 1_246_000) == 'Via LiteLLM: $1.95 | Direct: $1.24 | Total: $3.19'
    assert display.channel_text(4_400, 10_000) == 'Via LiteLLM: $0.0044 | Direct: $0.0100 | Total: $0.0144'


@given(st.lists(AMOUNTS, max_size=12))
def test_displayed_parts_add_up_to_the_displayed_total(parts: list[int]) -> None:
    shown, total = format_usd_sum(parts)
    assert sum(map(dollars, shown)) == dollars(total)
    assert dollars(total) == dollars(format_usd(sum(parts), usd_places(sum(parts), *parts)))
    places = {len(text.partition('.')[2]) for text in [*shown, total]}
    assert len(places) == 1  # one rule for the whole group


@given(st.lists(st.integers(min_value=-10**9, max_value=10**9), max_size=12), st.sampled_from([1, 100, 10_000]))
def test_apportion_moves_no_value_by_a_whole_unit(values: list[int], unit: int) -> None:
    rounded = apportion(values, unit)
    assert all(r % unit == 0 for r in rounded)
    assert all(abs(r - v) < unit for r, v in zip(rounded, values, strict=True))
    assert sum(rounded) == (Decimal(sum(values)) / unit).to_integral_value(ROUND_HALF_UP) * unit  # the sum, rounded


@given(st.lists(AMOUNTS, min_size=1, max_size=12))
def test_shares_add_up_to_a_hundred_percent(values: list[int]) -> None:
    shares = format_shares(values)
    total = sum(Decimal(s.removesuffix('%')) for s in shares)
    assert total == (100 if sum(values) else 0)


def test_shares_of_three_thirds() -> None:
    assert format_shares([1, 1, 1]) == ['33.34%', '33.33%', '33.33%']
    assert format_shares([0, 0]) == ['0.00%', '0.00%']


def test_plural() -> None:
    assert [display.plural(n, 'request') for n in (0, 1, 2, 1250)] == ['0 requests', '1 request', '2 requests',
                                                               '1,250 requests']
    assert display.plural(1, 'entry', 'entries') == '1 entry' and display.plural(3, 'entry', 'entries') == '3 entries'
