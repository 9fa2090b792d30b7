"""How people see money, shares and counts: one rule for the page, the CLI and alert messages.

Dollars: two places when the largest amount shown together is a dollar or more (or all are zero), four places
below that. Amounts shown together (a strip, a row, a column, "$x of $y") share their places, and parts shown with
their total are rounded so that they add up to the total as displayed (largest remainder).
"""
from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

from services.core.money import MICROS_PER_USD


def usd_places(*micros: int) -> int:
    """The places for amounts shown together: 4 when the largest is below a dollar (and not zero), else 2."""
    largest = max((abs(m) for m in micros), default=0)
    return 4 if 0 < largest < MICROS_PER_USD else 2


def format_usd(micros: int, places: int | None = None) -> str:
    """`$3.12`, `$1,250.00`, `$0.0044`, `-$0.5000`: `places` as `usd_places` chooses by default, rounded half away
    from zero as browsers do (FORMAT_USD_JS)."""
    places = usd_places(micros) if places is None else places
    value = (Decimal(abs(micros)) / MICROS_PER_USD).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    return f'{"-" if micros < 0 and value else ""}${value:,.{places}f}'


def format_usd_all(micros: Sequence[int]) -> list[str]:
    """Amounts shown together (a row, a column, "$x of $y"), all with the same places."""
    places = usd_places(*micros)
    return [format_usd(m, places) for m in micros]


def format_usd_sum(parts: Sequence[int], *beside: int, places: int | None = None) -> tuple[list[str], str]:
    """Parts and their total, on the same places, the displayed parts adding up to the displayed total.

    `beside`: amounts shown with them (the limit, say), which share the places but take no part in the sum.
    """
    total = sum(parts)
    places = usd_places(total, *parts, *beside) if places is None else places
    unit = 10 ** (6 - places)
    return [format_usd(m, places) for m in apportion(parts, unit)], format_usd(total, places)


def apportion(values: Sequence[int], unit: int) -> list[int]:
    """Round each value to a multiple of `unit` so that they add up to their sum rounded as `format_usd` rounds.

    Largest remainder: every value is floored, then the units left over go to the largest remainders (the earlier
    value on a tie), so no value moves by a whole unit or more.
    """
    target = int((Decimal(sum(values)) / unit).to_integral_value(ROUND_HALF_UP))
    floors = [v // unit for v in values]
    left = target - sum(floors)
    by_remainder = sorted(range(len(values)), key=lambda i: (-(values[i] - floors[i] * unit), i))
    for i in by_remainder[:left]:
        floors[i] += 1
    return [f * unit for f in floors]


def format_shares(values: Sequence[int]) -> list[str]:
    """Each value's share of their sum as `12.34%`, the displayed shares adding up to 100.00% (or all 0.00%)."""
    total = sum(values)
    if total <= 0 or any(v < 0 for v in values):
        return ['0.00%' if total <= 0 else f'{Decimal(100 * v) / total:.2f}%' for v in values]
    hundredths = [a // total for a in apportion([v * 10_000 for v in values], total)]
    return [f'{Decimal(h).scaleb(-2):.2f}%' for h in hundredths]


def plural(count: int, word: str, words: str | None = None) -> str:
    """`1 request`, `2 requests`, `1,250 requests`."""
    return f'{count:,} {word if count == 1 else words or word + "s"}'


def channel_text(litellm_micros: int, direct_micros: int, limit_micros: int | None = None) -> str:
    """The channel strip of the dashboard and the CLI: "Via LiteLLM: $X | Direct: $Y | Total: $Z", adding up, on
    the places of the gauge line it is shown with ("$Z / $limit")."""
    beside = () if limit_micros is None else (limit_micros,)
    (litellm, direct), total = format_usd_sum([litellm_micros, direct_micros], *beside)
    return f'Via LiteLLM: {litellm} | Direct: {direct} | Total: {total}'


# The same rule for chart tooltips, in the browser (a ':'-prefixed ECharts option key is JavaScript for NiceGUI).
FORMAT_USD_JS = ('(value) => { const a = Math.abs(Number(value)); const p = a > 0 && a < 1 ? 4 : 2;'
                 ' return (value < 0 ? "-$" : "$") + a.toLocaleString("en-US",'
                 ' {minimumFractionDigits: p, maximumFractionDigits: p}); }')
