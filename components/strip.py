"""The channel strip: "Via LiteLLM: $X | Direct: $Y | Total: $Z"."""
from __future__ import annotations

from services.core.money import format_usd
from services.spend.budget import PeriodSummary


def channel_strip_text(summary: PeriodSummary) -> str:
    channels = summary['by_channel']
    return (f'Via LiteLLM: {format_usd(channels["litellm"]["spent_micros"])} | '
            f'Direct: {format_usd(channels["direct"]["spent_micros"])} | '
            f'Total: {format_usd(summary["spent_micros"])}')
