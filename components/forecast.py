"""The caption under the dashboard's forecast line: the likely range by midnight and how it was estimated."""
from __future__ import annotations

from services.core.display import format_usd_all
from services.insights.forecast import RECENT_METHOD, RECENT_WINDOW, ForecastOut

METHODS = {'trailing_rate': 'trailing rate', 'profile_blend': 'recent rate and 14-day time-of-day profile',
           RECENT_METHOD: f'pace of the last {RECENT_WINDOW.seconds // 60} min'}


def forecast_caption(forecast: ForecastOut) -> str:
    """'' when nothing is projected (no spend, no history); else e.g. 'likely $3.20 to $4.40 by midnight (...)'."""
    method = METHODS.get(forecast['method'])
    if method is None:
        return ''
    low, high = format_usd_all([forecast['projected_low_micros'], forecast['projected_high_micros']])
    return f'likely {low} to {high} by midnight ({method})'
