"""The broken-loop detector: an agent whose spend in the last hour is far above its own usual hourly spend.

The baseline is the agent's active hours (hours with spend) over the trailing week, read from the hourly rollups:
threshold = median + max(K_MAD x MAD, the median itself, MIN_JUMP_MICROS), so the last hour must at least double
the usual and exceed it by $0.50 before a spread of zero (a very regular agent) can fire.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine

from services.alerting import alerts
from services.core.display import format_usd_all
from services.core.periods import as_utc, hour_floor
from services.live.hub import EventHub
from services.live.topics import AlertsChanged
from services.spend.rollups import totals_between

K_MAD = 6
MIN_JUMP_MICROS = 500_000
MIN_ACTIVE_HOURS = 6  # fewer active hours than this: no baseline yet, no judgement
BASELINE_DAYS = 7
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Verdict:
    anomalous: bool
    current_micros: int
    median_micros: int
    mad_micros: int
    threshold_micros: int | None  # None: too little history


def judge(history: Sequence[int], current: int, k: float = K_MAD, min_jump: int = MIN_JUMP_MICROS,
          min_hours: int = MIN_ACTIVE_HOURS) -> Verdict:
    """Compare one hour's spend with past hourly totals (zero hours are ignored: the agent was not running)."""
    active = [h for h in history if h > 0]
    if len(active) < min_hours:
        return Verdict(False, current, 0, 0, None)
    median = statistics.median(active)
    mad = statistics.median(abs(h - median) for h in active)
    threshold = round(median + max(k * mad, median, min_jump))
    return Verdict(current > threshold, current, round(median), round(mad), threshold)


def hourly_history(conn: Connection, end_hour: datetime, days: int = BASELINE_DAYS) -> dict[str, list[int]]:
    """Per agent, the spend of each full hour in [end_hour - days, end_hour), oldest first, zeros included."""
    edges = [end_hour - timedelta(hours=h) for h in range(days * 24, -1, -1)]
    buckets = totals_between(conn, edges, ('agent_id',))
    series: dict[str, list[int]] = {}
    for index, group in enumerate(buckets.groups):
        for (agent_id,), totals in group.items():
            if agent_id:
                series.setdefault(agent_id, [0] * len(buckets.groups))[index] = totals.cost_micros
    return series


def check_anomalies(conn: Connection, now: datetime | None = None) -> list[tuple[alerts.AlertOut | None, bool]]:
    """Raise an `anomaly` alert for each agent whose last 60 minutes are anomalous, resolve it when they are not.
    Returns what raise_alert returned for each agent over its threshold."""
    now = as_utc(now or datetime.now(UTC))
    window_start = now - HOUR
    current = {key[0]: totals.cost_micros
               for key, totals in totals_between(conn, [window_start, now], ('agent_id',)).groups[0].items()
               if key[0]}
    history = hourly_history(conn, hour_floor(window_start))
    raised = []
    for agent_id in sorted(set(current) | set(history)):
        verdict = judge(history.get(agent_id, []), current.get(agent_id, 0))
        key = f'anomaly:{agent_id}'
        if not verdict.anomalous:
            if verdict.threshold_micros is not None:
                alerts.resolve_key(conn, key, now)
            continue
        assert verdict.threshold_micros is not None
        severity: alerts.Severity = 'critical' if verdict.current_micros > 3 * verdict.threshold_micros else 'warning'
        spent, usual, threshold = format_usd_all([verdict.current_micros, verdict.median_micros,
                                                  verdict.threshold_micros])
        message = (f'{agent_id} spent {spent} in the last hour; it usually spends {usual} an hour '
                   f'(threshold {threshold}). A runaway loop?')
        raised.append(alerts.raise_alert(conn, 'anomaly', severity, message, key, {
            'agent_id': agent_id, 'last_hour_micros': verdict.current_micros, 'median_micros': verdict.median_micros,
            'mad_micros': verdict.mad_micros, 'threshold_micros': verdict.threshold_micros}, now=now))
    return raised


def run_anomaly_check(engine: Engine, hub: EventHub, now: datetime | None = None) -> list[alerts.AlertOut]:
    """The scheduled job (a worker thread): check, commit, then publish each newly opened alert."""
    with engine.begin() as conn:
        raised = check_anomalies(conn, now)
    new = alerts.publish_new(hub, raised)
    if raised:
        hub.publish(AlertsChanged(reason='anomaly'))
    return new
