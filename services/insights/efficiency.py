"""Token efficiency per agent or model over a period, from the rollups: how many output tokens each input token
buys, how much of the input the cache served, and what 1,000 output tokens cost, with that cost day by day."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection
from typing_extensions import TypedDict

from services.core.money import micros_to_usd
from services.core.periods import Period, local_midnight, midnight_on_or_after
from services.spend.rollups import Totals, totals_between

EfficiencyBy = Literal['agent', 'model']
COLUMNS: dict[str, str] = {'agent': 'agent_id', 'model': 'model'}


class EfficiencyDay(TypedDict):
    day: str  # the local date the day (or the part of it inside the period) starts on
    requests: int
    cost_per_1k_output_micros: int | None  # None: no output tokens that day


class EfficiencyItem(TypedDict):
    name: str | None  # the agent or model; None: the calls that named no agent
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cost_micros: int
    cost_usd: str
    output_per_input: float | None  # output tokens per input token, 3 places; None without input tokens
    cache_read_percent: float | None  # cache read tokens as a share of input tokens, one place
    cost_per_1k_output_micros: int | None  # the cost of 1,000 output tokens (all of the calls' cost), rounded
    trend: list[EfficiencyDay]  # the period's days with calls, oldest first


class EfficiencyOut(TypedDict):
    period: str | None
    start: str
    end: str
    by: EfficiencyBy
    agent_id: str | None  # only this agent's calls; None: every call
    items: list[EfficiencyItem]  # the most spent first


def token_efficiency(conn: Connection, span: Period, zone: ZoneInfo, by: EfficiencyBy,
                     agent_id: str | None = None) -> EfficiencyOut:
    """`agent_id`: only that agent's calls (by model: the models it used)."""
    edges = day_edges(span, zone)
    buckets = totals_between(conn, edges, ('agent_id', COLUMNS[by]) if agent_id is not None else (COLUMNS[by],))
    whole: dict[str | None, Totals] = {}
    days: dict[str | None, list[EfficiencyDay]] = {}
    for index, group in enumerate(buckets.groups):
        day = edges[index].astimezone(zone).date().isoformat()
        for key, totals in group.items():
            if not totals.requests or (agent_id is not None and key[0] != agent_id):
                continue
            name = key[-1]
            whole.setdefault(name, Totals()).merge(totals)
            days.setdefault(name, []).append({'day': day, 'requests': totals.requests,
                                              'cost_per_1k_output_micros': _per_1k(totals)})
    items = [_item(name, totals, days[name]) for name, totals in whole.items()]
    items.sort(key=lambda item: (-item['cost_micros'], str(item['name'])))
    return {'period': span.name, 'start': span.start.isoformat(), 'end': span.end.isoformat(), 'by': by,
            'agent_id': agent_id, 'items': items}


def agent_models(conn: Connection, agent_id: str, zone: ZoneInfo, days: int = 7,
                 now: datetime | None = None) -> EfficiencyOut:
    """One agent's efficiency per model over its last `days` local days, today's part included."""
    now = now or datetime.now(UTC)
    first = local_midnight(now.astimezone(zone).date() - timedelta(days=days - 1), zone)
    return token_efficiency(conn, Period('custom', first, now), zone, 'model', agent_id)


def day_edges(span: Period, zone: ZoneInfo) -> list[datetime]:
    """The span's start, each local midnight inside it, its end."""
    edges = [span.start]
    midnight = midnight_on_or_after(span.start + timedelta(microseconds=1), zone)
    while midnight < span.end:
        edges.append(midnight)
        midnight = midnight_on_or_after(midnight + timedelta(hours=1), zone)
    edges.append(span.end)
    return edges


def _per_1k(totals: Totals) -> int | None:
    if not totals.output_tokens:
        return None
    return (totals.cost_micros * 1000 + totals.output_tokens // 2) // totals.output_tokens


def _item(name: str | None, t: Totals, trend: list[EfficiencyDay]) -> EfficiencyItem:
    return {'name': name, 'requests': t.requests, 'input_tokens': t.input_tokens, 'output_tokens': t.output_tokens,
            'cache_read_tokens': t.cache_read_tokens, 'cost_micros': t.cost_micros,
            'cost_usd': micros_to_usd(t.cost_micros),
            'output_per_input': round(t.output_tokens / t.input_tokens, 3) if t.input_tokens else None,
            'cache_read_percent': round(100 * t.cache_read_tokens / t.input_tokens, 1) if t.input_tokens else None,
            'cost_per_1k_output_micros': _per_1k(t), 'trend': trend}
