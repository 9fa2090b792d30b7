"""The channel strip: "Via LiteLLM: $X | Direct: $Y | Total: $Z"."""
from __future__ import annotations

from services.core.display import channel_text
from services.spend.budget import PeriodSummary


def channel_strip_text(summary: PeriodSummary) -> str:
    channels = summary['by_channel']
    return channel_text(channels['litellm']['spent_micros'], channels['direct']['spent_micros'],
                        summary['limit_micros'])
