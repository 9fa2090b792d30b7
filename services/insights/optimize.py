"""What the period's calls would have cost on other models. For each agent, and each of its models: the token mix
re-priced on the same provider's cheaper models and on the configured substitutes, the saving per day and per 30-day
month, the share of calls that fit each candidate's context window, and what prompt caching could save.

How a mix is priced: the rollups hold each (agent, provider, model)'s tokens per local day. They are priced on the
candidate by the runtime's pricer (overrides first, as ingest prices) at the prices in force at the middle of each
day, summed over each run of days at the same prices (nearly always the whole period, read as one total) and rounded
half-even to micro-USD once per run. Within a price tier genai-prices is linear, so that is the exact sum of the
calls' prices, rounded once; ingest rounds each call, so the two differ by less than half a micro-USD per call. A
model whose price depends on each call (tiers by call size, the time of day, a fee per request) cannot be priced from
a sum: it is not offered, and `excluded` says why.

Context windows need each call's size, which the rollups do not keep: the sizes come from the newest SAMPLE_CALLS
calls of the period (of the agent, when one is asked), and each share says how many calls it rests on.

Suggestions are about cost only: nothing here knows whether another model does the same work as well.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, case, func, select
from typing_extensions import TypedDict

from services.core.money import micros_to_usd
from services.core.periods import Period, as_utc
from services.core.tables import EVENTS
from services.insights.efficiency import day_edges
from services.spend.rollups import Totals, totals_between
from services.usage.pricing import MTOK, CatalogueModel, MixRates, Pricer, TokenCounts, divide_half_even

SAMPLE_CALLS = 10_000  # the newest calls whose sizes tell the context-window fit (one bounded, indexed read)
TIER_CANDIDATES = 3  # the same provider's cheapest models offered per agent and model
AGENT_CANDIDATES = 5  # candidates shown per agent (for all of its calls)
ASSUMED_CACHE_READ_PERCENT = 50  # the caching what-if: this share of the input read from the provider's cache
MONTH_DAYS = 30
SHORTEST_OBSERVED = timedelta(hours=1)  # a projection from less would multiply a few minutes' calls
DAY_SECONDS = 86_400
NOTE = ("Cost only: these figures re-price the period's calls at other models' prices. They say nothing about "
        'quality, speed or whether another model can do the same work; try a candidate before switching.')
METHOD = ("Each agent's tokens per model and local day (from the rollups), priced on the candidate by the same "
          'pricer as ingest (price overrides first) and rounded to the micro-USD once per run of days at the same '
          'prices (ingest rounds each call: under half a micro-USD per call apart). Models priced per call (tiers '
          'by call size, time of day, request fees) cannot be priced from summed tokens and are not offered.')
CandidateKind = Literal['cheaper_tier', 'substitute']


class Candidate(TypedDict):
    provider: str
    model: str
    kind: CandidateKind  # the same provider's cheaper model, or one of SPENDGAUGE_OPTIMIZE_SUBSTITUTES
    cost_micros: int  # the same calls priced on this model
    cost_usd: str
    saving_micros: int  # actual cost minus that; negative: it would cost more
    saving_usd: str
    saving_percent: float | None  # of the actual cost, one place; None when nothing was spent
    saving_per_day_micros: int | None  # the saving over the period's elapsed part, per day; None before it starts
    saving_per_day_usd: str | None
    saving_per_month_micros: int | None  # per 30 days
    saving_per_month_usd: str | None
    context_window: int | None
    fit_percent: float | None  # sampled calls whose input and output fit the window, one place
    fit_sample: int  # the sampled calls that share rests on


class Caching(TypedDict):
    cache_read_percent: float  # of the input tokens, one place
    assumed_cache_read_percent: int
    assumption: str
    list_cost_micros: int  # the mix at the model's own prices, as it was
    list_cost_usd: str
    cost_micros: int  # the same mix with the assumed share read from the cache
    cost_usd: str
    saving_micros: int
    saving_usd: str
    saving_per_month_micros: int | None
    saving_per_month_usd: str | None


class ModelOptimization(TypedDict):
    provider: str | None
    model: str | None
    requests: int
    input_tokens: int  # cache reads and writes included
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    actual_cost_micros: int  # as recorded (priced at ingest, or reported by the caller)
    actual_cost_usd: str
    list_cost_micros: int | None  # the same mix re-priced on its own model as the candidates are; None: cannot be
    list_cost_usd: str | None
    candidates: list[Candidate]  # the largest saving first
    caching: Caching | None  # when the cache served little of the input and the model reads from it for less


class AgentOptimization(TypedDict):
    agent_id: str | None  # None: the calls that named no agent
    requests: int
    actual_cost_micros: int
    actual_cost_usd: str
    candidates: list[Candidate]  # all of the agent's calls on one model, the largest saving first
    models: list[ModelOptimization]  # the most spent first


class SampleInfo(TypedDict):
    calls: int  # the calls the context-window shares rest on
    limit: int
    complete: bool  # every call of the period (and agent) is in it
    oldest: str | None  # the sample's time range (the newest calls of the period)
    newest: str | None


class ExcludedModel(TypedDict):
    provider: str
    model: str
    reason: str


class OptimizeOut(TypedDict):
    period: str | None
    start: str
    end: str
    agent_id: str | None
    observed_days: float | None  # the period's elapsed part that projections scale from, in days (two places)
    note: str
    method: str
    sample: SampleInfo
    agents: list[AgentOptimization]  # the most spent first
    excluded: list[ExcludedModel]  # candidate models not re-priced, and why


@dataclass
class _Group:
    """One agent's calls on one model: their tokens per day, totals and sampled sizes."""

    agent_id: str | None
    provider: str | None
    model: str | None
    days: list[tuple[datetime, TokenCounts]] = field(default_factory=list)  # read only when prices change
    totals: Totals = field(default_factory=Totals)
    whole: TokenCounts = field(default_factory=TokenCounts)  # the days' tokens summed
    sampled: int = 0  # its calls among the sampled ones
    fits: dict[int, int] = field(default_factory=dict)  # context window -> sampled calls that fit it


class _Repricer:
    """Prices groups on models with the pricer's rates for each day of the period, once per (group, model);
    remembers the models it could not price, and why."""

    def __init__(self, pricer: Pricer, days: list[datetime], load_days: Callable[[], None]) -> None:
        self.pricer = pricer
        self.days = days  # the middle of each day of the period
        self.excluded: dict[tuple[str, str], str] = {}
        self._load_days = load_days  # fills each group's `days`: read only when some prices change in the period
        self._days_loaded = False
        self._rates: dict[tuple[str, str, datetime], MixRates | str] = {}
        self._plans: dict[tuple[str, str], MixRates | dict[datetime, MixRates] | None] = {}
        self._costs: dict[tuple[int, str, str], int | None] = {}

    def rates(self, provider: str, model: str, ts: datetime) -> MixRates | None:
        key = (provider, model, ts)
        found = self._rates.get(key)
        if found is None:
            found = self._rates[key] = self.pricer.mix_rates(provider, model, ts)
        if isinstance(found, str):
            self.excluded[(provider, model)] = found
            return None
        return found

    def cost(self, group: _Group, provider: str, model: str) -> int | None:
        key = (id(group), provider, model)
        if key not in self._costs:
            self._costs[key] = self.price(group, provider, model)
        return self._costs[key]

    def price(self, group: _Group, provider: str, model: str,
              change: Callable[[TokenCounts], TokenCounts] | None = None) -> int | None:
        """The group's tokens (`change`d) priced on the model: summed over each run of days at the same prices,
        each run's exact price rounded once. With the same prices all period (nearly always), one run."""
        plan = self._plan(provider, model)
        if plan is None:
            return None
        if not isinstance(plan, dict):
            return plan.cost_micros(change(group.whole) if change else group.whole)
        if not self._days_loaded:
            self._load_days()
            self._days_loaded = True
        total = 0
        run: tuple[MixRates, TokenCounts] | None = None
        for ts, tokens in group.days:
            rates, tokens = plan[ts], change(tokens) if change else tokens
            if run is not None and rates == run[0]:
                run = (rates, _sum((run[1], tokens)))
                continue
            if run is not None:
                total += run[0].cost_micros(run[1])
            run = (rates, tokens)
        return total + (run[0].cost_micros(run[1]) if run is not None else 0)

    def _plan(self, provider: str, model: str) -> MixRates | dict[datetime, MixRates] | None:
        """The model's rates on each day of the period (one rates when they never change); None when it cannot be
        priced on one of them."""
        key = (provider, model)
        if key not in self._plans:
            found = [self.rates(provider, model, ts) for ts in self.days]
            if not all(found):
                self._plans[key] = None
            else:
                rates = [r for r in found if r is not None]
                self._plans[key] = rates[0] if all(r == rates[0] for r in rates) else dict(zip(self.days, rates,
                                                                                                strict=True))
        return self._plans[key]


def optimize(conn: Connection, pricer: Pricer, span: Period, zone: ZoneInfo,
             substitutes: Sequence[tuple[str, str]] = (), agent_id: str | None = None,
             now: datetime | None = None) -> OptimizeOut:
    """The period's calls (of `agent_id`, or of every agent) re-priced on candidate models; see the module."""
    now = as_utc(now or datetime.now(UTC))
    groups = _groups(conn, span, agent_id)
    observed = _observed_seconds(span, now)
    middle = span.start + (min(span.end, max(now, span.start)) - span.start) / 2
    repricer = _Repricer(pricer, _day_middles(span, zone), lambda: _load_days(conn, span, zone, groups))
    wanted = [entry for entry in (pricer.catalogue_entry(p, m) for p, m in substitutes) if entry is not None]
    tiers = _cheaper_tiers(list(groups.values()), repricer, middle)
    windows = sorted({m.context_window for m in (*wanted, *(m for found in tiers.values() for m in found))
                      if m.context_window})
    sample = _sample(conn, span, agent_id, groups, windows)
    by_agent: dict[str | None, list[_Group]] = {}
    for group in groups.values():
        by_agent.setdefault(group.agent_id, []).append(group)
    agents = [_agent(members, repricer, tiers, wanted, observed, middle) for members in by_agent.values()]
    agents.sort(key=lambda a: (-a['actual_cost_micros'], a['agent_id'] or ''))
    return {'period': span.name, 'start': span.start.isoformat(), 'end': span.end.isoformat(), 'agent_id': agent_id,
            'observed_days': None if observed is None else round(observed / DAY_SECONDS, 2), 'note': NOTE,
            'method': METHOD, 'sample': sample, 'agents': agents,
            'excluded': [{'provider': p, 'model': m, 'reason': reason}
                         for (p, m), reason in sorted(repricer.excluded.items())]}


def _groups(conn: Connection, span: Period, agent_id: str | None) -> dict[tuple, _Group]:
    """Each (agent, provider, model)'s totals over the period, from the rollups."""
    [totals_of] = totals_between(conn, [span.start, span.end], ('agent_id', 'provider', 'model')).groups
    groups = {}
    for key, totals in totals_of.items():
        if totals.requests and (agent_id is None or key[0] == agent_id):
            groups[key] = _Group(key[0], key[1], key[2], totals=totals, whole=_tokens(totals))
    return groups


def _day_middles(span: Period, zone: ZoneInfo) -> list[datetime]:
    return [start + (end - start) / 2 for start, end in pairwise(day_edges(span, zone))]


def _load_days(conn: Connection, span: Period, zone: ZoneInfo, groups: dict[tuple, _Group]) -> None:
    """Each group's tokens per local day, keyed by the middle of the day (for prices that change in the period)."""
    buckets = totals_between(conn, day_edges(span, zone), ('agent_id', 'provider', 'model'))
    for middle, day in zip(_day_middles(span, zone), buckets.groups, strict=True):
        for key, totals in day.items():
            group = groups.get(key)
            if group is not None and totals.requests:
                group.days.append((middle, _tokens(totals)))


def _sample(conn: Connection, span: Period, agent_id: str | None, groups: dict[tuple, _Group],
            windows: list[int]) -> SampleInfo:
    """Of the period's newest SAMPLE_CALLS calls, how many each group has and how many of those fit each of the
    context `windows` (input and output tokens within it): counted by the database in one read."""
    where = [EVENTS.c.ts >= span.start, EVENTS.c.ts < span.end]
    if agent_id is not None:
        where.append(EVENTS.c.agent_id == agent_id)
    size = func.coalesce(EVENTS.c.input_tokens, 0) + func.coalesce(EVENTS.c.output_tokens, 0)
    newest = (select(EVENTS.c.ts, EVENTS.c.agent_id, EVENTS.c.provider, EVENTS.c.model, size.label('size'))
              .where(*where).order_by(EVENTS.c.ts.desc()).limit(SAMPLE_CALLS).subquery())
    dims = (newest.c.agent_id, newest.c.provider, newest.c.model)
    fits = [func.sum(case((newest.c.size <= window, 1), else_=0)) for window in windows]
    query = select(*dims, func.count(), func.min(newest.c.ts), func.max(newest.c.ts), *fits).group_by(*dims)
    calls, oldest, latest = 0, None, None
    for agent, provider, model, count, first, last, *fitting in conn.execute(query):
        calls += count
        oldest = as_utc(first) if oldest is None else min(oldest, as_utc(first))
        latest = as_utc(last) if latest is None else max(latest, as_utc(last))
        group = groups.get((agent or None, provider or None, model or None))
        if group is not None:
            group.sampled += count
            for window, fit in zip(windows, fitting, strict=True):
                group.fits[window] = group.fits.get(window, 0) + int(fit or 0)
    return {'calls': calls, 'limit': SAMPLE_CALLS, 'complete': calls < SAMPLE_CALLS,
            'oldest': oldest.isoformat() if oldest else None, 'newest': latest.isoformat() if latest else None}


def _cheaper_tiers(groups: list[_Group], repricer: _Repricer,
                   middle: datetime) -> dict[tuple[str | None, str | None], list[CatalogueModel]]:
    """For each (provider, model) of the period, the same provider's TIER_CANDIDATES models that cost least on the
    period's whole mix of that model (every agent's calls, at the prices of the period's middle), below what it
    cost. Each agent's calls are then priced on them day by day."""
    mixes: dict[tuple[str | None, str | None], Totals] = {}
    for group in groups:
        mixes.setdefault((group.provider, group.model), Totals()).merge(group.totals)
    found = {}
    for (provider, model), totals in mixes.items():
        whole = _tokens(totals)
        cheaper: list[tuple[int, str, CatalogueModel]] = []
        for other in repricer.pricer.provider_models(provider or '', model or '', middle) if model else ():
            rates = repricer.rates(other.provider, other.model, middle)
            if rates is not None and (cost := rates.cost_micros(whole)) < totals.cost_micros:
                cheaper.append((cost, other.model, other))
        cheaper.sort(key=lambda c: (c[0], c[1]))
        found[(provider, model)] = [other for _, _, other in cheaper[:TIER_CANDIDATES]]
    return found


def _agent(members: list[_Group], repricer: _Repricer,
           tiers: dict[tuple[str | None, str | None], list[CatalogueModel]], substitutes: list[CatalogueModel],
           observed: int | None, middle: datetime) -> AgentOptimization:
    models: list[ModelOptimization] = []
    offered: dict[tuple[str, str], tuple[CandidateKind, CatalogueModel]] = {}
    for group in members:
        row, its = _model(group, repricer, tiers[(group.provider, group.model)], substitutes, observed, middle)
        models.append(row)
        for kind, candidate in its:
            offered.setdefault((candidate.provider, candidate.model), (kind, candidate))
    models.sort(key=lambda m: (-m['actual_cost_micros'], m['provider'] or '', m['model'] or ''))
    actual, requests = sum(g.totals.cost_micros for g in members), sum(g.totals.requests for g in members)
    sampled = sum(group.sampled for group in members)
    windows = {window for group in members for window in group.fits}
    fits = {window: sum(group.fits.get(window, 0) for group in members) for window in windows}
    candidates: list[Candidate] = []
    for kind, candidate in _cheapest(members, offered.values(), repricer, middle):
        costs = [repricer.cost(group, candidate.provider, candidate.model) for group in members]
        if all(cost is not None for cost in costs):
            candidates.append(_candidate(kind, candidate, sum(c for c in costs if c is not None), actual, sampled,
                                         fits, observed))
    candidates.sort(key=_by_saving)
    return {'agent_id': members[0].agent_id, 'requests': requests, 'actual_cost_micros': actual,
            'actual_cost_usd': micros_to_usd(actual), 'candidates': candidates, 'models': models}


def _cheapest(members: list[_Group], offered: Iterable[tuple[CandidateKind, CatalogueModel]], repricer: _Repricer,
              middle: datetime) -> list[tuple[CandidateKind, CatalogueModel]]:
    """The AGENT_CANDIDATES of `offered` that cost least on all of the agent's calls (at the middle's prices)."""
    whole = Totals()
    for group in members:
        whole.merge(group.totals)
    tokens = _tokens(whole)
    ranked = []
    for kind, model in offered:
        rates = repricer.rates(model.provider, model.model, middle)
        if rates is not None:
            ranked.append((rates.cost_micros(tokens), model.provider, model.model, kind, model))
    ranked.sort(key=lambda r: r[:3])
    return [(kind, model) for *_, kind, model in ranked[:AGENT_CANDIDATES]]


def _model(group: _Group, repricer: _Repricer, tiers: list[CatalogueModel], substitutes: list[CatalogueModel],
           observed: int | None, middle: datetime) -> tuple[ModelOptimization, list[tuple[CandidateKind,
                                                                                         CatalogueModel]]]:
    pricer, t = repricer.pricer, group.totals
    provider, model = group.provider or '', group.model or ''
    current = pricer.catalogue_entry(provider, model) if model else None
    list_cost = repricer.cost(group, provider, model) if model else None
    taken = {(tier.provider, tier.model) for tier in tiers} | \
        ({(current.provider, current.model)} if current is not None else set())
    offered: list[tuple[CandidateKind, CatalogueModel]] = [('cheaper_tier', tier) for tier in tiers]
    offered += [('substitute', other) for other in substitutes if (other.provider, other.model) not in taken]
    candidates = []
    for kind, candidate in offered:
        cost = repricer.cost(group, candidate.provider, candidate.model)
        if cost is not None and (kind == 'substitute' or cost < t.cost_micros):
            candidates.append(_candidate(kind, candidate, cost, t.cost_micros, group.sampled, group.fits, observed))
    candidates.sort(key=_by_saving)
    row: ModelOptimization = {
        'provider': group.provider, 'model': group.model, 'requests': t.requests, 'input_tokens': t.input_tokens,
        'output_tokens': t.output_tokens, 'cache_read_tokens': t.cache_read_tokens,
        'cache_write_tokens': t.cache_write_tokens, 'actual_cost_micros': t.cost_micros,
        'actual_cost_usd': micros_to_usd(t.cost_micros), 'list_cost_micros': list_cost,
        'list_cost_usd': None if list_cost is None else micros_to_usd(list_cost), 'candidates': candidates,
        'caching': _caching(group, repricer, list_cost, observed, middle)}
    return row, offered


def _caching(group: _Group, repricer: _Repricer, list_cost: int | None, observed: int | None,
             middle: datetime) -> Caching | None:
    """What the same mix would cost with ASSUMED_CACHE_READ_PERCENT of its input read from the provider's cache (of
    the period's input; of each day's when prices change in the period), when the cache served less than that and
    the model reads from it for less than its input price."""
    t = group.totals
    provider, model = group.provider or '', group.model or ''
    if list_cost is None or 100 * t.cache_read_tokens >= ASSUMED_CACHE_READ_PERCENT * t.input_tokens:
        return None  # (no input tokens: 0 >= 0)
    rates = repricer.rates(provider, model, middle)
    if rates is None or rates.cost_micros(TokenCounts(MTOK, 0, MTOK, 0)) >= rates.cost_micros(TokenCounts(MTOK)):
        return None  # the cache reads no cheaper than the input
    cost = repricer.price(group, provider, model, _with_cache_reads)
    if cost is None:
        return None
    saving = list_cost - cost
    per_month = _projected(saving * MONTH_DAYS, observed)
    return {'cache_read_percent': round(100 * t.cache_read_tokens / t.input_tokens, 1),
            'assumed_cache_read_percent': ASSUMED_CACHE_READ_PERCENT,
            'assumption': f'if {ASSUMED_CACHE_READ_PERCENT} % of the input tokens were read from the prompt cache '
                          '(cache writes as recorded): needs prompts that repeat a long prefix, which the stored '
                          'calls cannot show',
            'list_cost_micros': list_cost, 'list_cost_usd': micros_to_usd(list_cost), 'cost_micros': cost,
            'cost_usd': micros_to_usd(cost), 'saving_micros': saving, 'saving_usd': micros_to_usd(saving),
            'saving_per_month_micros': per_month,
            'saving_per_month_usd': None if per_month is None else micros_to_usd(per_month)}


def _with_cache_reads(tokens: TokenCounts) -> TokenCounts:
    assumed = tokens.input_tokens * ASSUMED_CACHE_READ_PERCENT // 100
    reads = max(tokens.cache_read_tokens, min(assumed, tokens.input_tokens - tokens.cache_write_tokens))
    return TokenCounts(tokens.input_tokens, tokens.output_tokens, reads, tokens.cache_write_tokens)


def _candidate(kind: CandidateKind, model: CatalogueModel, cost: int, actual: int, sampled: int,
               fits: dict[int, int], observed: int | None) -> Candidate:
    saving = actual - cost
    per_day, per_month = _projected(saving, observed), _projected(saving * MONTH_DAYS, observed)
    fitting = fits.get(model.context_window) if model.context_window else None
    return {'provider': model.provider, 'model': model.model, 'kind': kind, 'cost_micros': cost,
            'cost_usd': micros_to_usd(cost), 'saving_micros': saving, 'saving_usd': micros_to_usd(saving),
            'saving_percent': round(100 * saving / actual, 1) if actual else None,
            'saving_per_day_micros': per_day, 'saving_per_day_usd': None if per_day is None else micros_to_usd(per_day),
            'saving_per_month_micros': per_month,
            'saving_per_month_usd': None if per_month is None else micros_to_usd(per_month),
            'context_window': model.context_window,
            'fit_percent': round(100 * fitting / sampled, 1) if sampled and fitting is not None else None,
            'fit_sample': sampled}


def _by_saving(candidate: Candidate) -> tuple[int, str, str]:
    return -candidate['saving_micros'], candidate['provider'], candidate['model']


def _observed_seconds(span: Period, now: datetime) -> int | None:
    """The seconds of the period up to now (the whole of a past one), at least SHORTEST_OBSERVED; None before it."""
    end = min(span.end, now)
    if end <= span.start:
        return None
    return int(max(end - span.start, SHORTEST_OBSERVED).total_seconds())


def _projected(micros: int, observed: int | None) -> int | None:
    """`micros` spread over the observed seconds, per day; rounded half-even."""
    return None if observed is None else divide_half_even(micros * DAY_SECONDS, observed)


def _sum(counts: Iterable[TokenCounts]) -> TokenCounts:
    total = Totals()
    for c in counts:
        total.input_tokens += c.input_tokens
        total.output_tokens += c.output_tokens
        total.cache_read_tokens += c.cache_read_tokens
        total.cache_write_tokens += c.cache_write_tokens
    return _tokens(total)


def _tokens(totals: Totals) -> TokenCounts:
    return TokenCounts(totals.input_tokens, totals.output_tokens, totals.cache_read_tokens, totals.cache_write_tokens)

