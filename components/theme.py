"""Design constants: colours live here, not in components."""
from __future__ import annotations

from dataclasses import dataclass

GOLD = '#d4a72c'
DARK_ARC = '#2b2f3a'
LIGHT_ARC = '#e5e7eb'
WARNING = '#f59e0b'
CRITICAL = '#ef4444'
OK = '#22c55e'
TEXT_MUTED = '#9ca3af'
SOFT_PERCENT = 80
CRITICAL_PERCENT = 95
PALETTE = ['#d4a72c', '#60a5fa', '#34d399', '#f472b6', '#a78bfa', '#f97316', '#94a3b8']
# the accents as text: on a white page the bright ones above are too faint (under 3:1), on a dark card red is
ON_LIGHT = {GOLD: '#8a6500', WARNING: '#b45309', CRITICAL: '#dc2626'}
ON_DARK = {CRITICAL: '#f87171'}


@dataclass(frozen=True)
class ChartColours:
    """What a chart draws around its data, for one page theme (ECharts' own greys are made for a white page)."""

    text: str  # axis labels, legends, the gauge's caption
    axis: str  # axis lines
    grid: str  # split lines
    track: str  # the gauge's unfilled arc
    dark: bool

    def accent(self, colour: str) -> str:
        """An accent colour (gold, amber, red) used as text, readable on this theme's background."""
        return (ON_DARK if self.dark else ON_LIGHT).get(colour, colour)


DARK = ChartColours(text='#d1d5db', axis='#6b7280', grid='rgba(255, 255, 255, 0.12)', track=DARK_ARC, dark=True)
LIGHT = ChartColours(text='#374151', axis='#9ca3af', grid='rgba(0, 0, 0, 0.08)', track=LIGHT_ARC, dark=False)


def chart_colours(dark: bool) -> ChartColours:
    return DARK if dark else LIGHT
