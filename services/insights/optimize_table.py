"""The optimiser's answer (services/insights/optimize.py) as the rows of one table, for the CLI and the Optimise
page. Loads no database layer: the CLI imports it for answers from a server too."""
from __future__ import annotations

from typing import TYPE_CHECKING

from services.core.display import format_usd

if TYPE_CHECKING:
    from services.insights.optimize import Candidate, OptimizeOut


WHAT = 'agent / model / candidate'
TABLE_COLUMNS = (WHAT, 'cost', 'saving', 'saving %', 'per day', 'per month', 'fits window')


def table_rows(out: OptimizeOut) -> list[dict[str, str]]:
    """The answer as the rows of one table (the CLI's and the Optimise page's): each agent (all of its calls), then
    each of its models, each followed by its candidates (→) and a caching what-if."""
    rows: list[dict[str, str]] = []
    for agent in out['agents']:
        rows.append(_row(f'{agent["agent_id"] or "(no agent)"}: all models', agent['actual_cost_micros']))
        rows += [_candidate_row(c, '  ') for c in agent['candidates']]
        for model in agent['models']:
            rows.append(_row(f'  {model["provider"] or ""}/{model["model"] or ""}', model['actual_cost_micros']))
            rows += [_candidate_row(c, '    ') for c in model['candidates']]
            caching = model['caching']
            if caching is not None:
                rows.append(_row(f'    caching: {caching["assumed_cache_read_percent"]} % of input cached',
                                 caching['cost_micros'], caching['saving_micros'], None,
                                 caching['saving_per_month_micros']))
    return rows


def _candidate_row(c: Candidate, indent: str) -> dict[str, str]:
    tag = '' if c['kind'] == 'cheaper_tier' else ' (substitute)'
    row = _row(f'{indent}→ {c["provider"]}/{c["model"]}{tag}', c['cost_micros'], c['saving_micros'],
               c['saving_per_day_micros'], c['saving_per_month_micros'])
    row['saving %'] = '' if c['saving_percent'] is None else f'{c["saving_percent"]:.1f}%'
    row['fits window'] = '' if c['fit_percent'] is None else f'{c["fit_percent"]:.1f}% of {c["fit_sample"]:,}'
    return row


def _row(what: str, cost: int, saving: int | None = None, per_day: int | None = None,
         per_month: int | None = None) -> dict[str, str]:
    def usd(micros: int | None) -> str:
        return '' if micros is None else format_usd(micros, 6)

    return {WHAT: what, 'cost': usd(cost), 'saving': usd(saving), 'saving %': '', 'per day': usd(per_day),
            'per month': usd(per_month), 'fits window': ''}
