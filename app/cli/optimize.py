"""`spendgauge optimize`: what the period's calls would have cost on other models (cost only, never quality)."""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, cast

from app.cli.args import PERIODS, client_options
from app.cli.backends import Backend, CliError
from app.cli.output import table

if TYPE_CHECKING:
    from services.insights.optimize import OptimizeOut
from services.insights.optimize_table import TABLE_COLUMNS, table_rows


def register(sub: Any) -> None:
    optimize = sub.add_parser('optimize', help="each agent's calls re-priced on cheaper models (cost only)",
                              description="A period (default day) or --from/--to: each agent's (and model's) calls "
                                          "re-priced on the same provider's cheaper models and on "
                                          'SPENDGAUGE_OPTIMIZE_SUBSTITUTES, as GET /api/v1/optimize answers.')
    client_options(optimize)
    optimize.add_argument('--agent', help='only this agent')
    optimize.add_argument('--period', choices=PERIODS)
    optimize.add_argument('--from', dest='start', metavar='FROM', help='ISO date (local day) or datetime')
    optimize.add_argument('--to', dest='end', metavar='TO', help='ISO date (inclusive local day) or datetime')
    optimize.add_argument('--json', action='store_true')
    optimize.set_defaults(run=cmd_optimize)


def cmd_optimize(args: argparse.Namespace, backend: Backend) -> int:
    if bool(args.start) != bool(args.end):
        raise CliError('give both --from and --to, or neither', 2)
    if args.period and args.start:
        raise CliError('give --period or --from/--to, not both', 2)
    params = {name: value for name, value in (('agent_id', args.agent), ('period', args.period),
                                              ('from', args.start), ('to', args.end)) if value}
    out = backend.optimize(params)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    sample = out['sample']
    print(f'{out["period"] or "from"} {out["start"]} .. {out["end"]}'
          + (f', agent {out["agent_id"]}' if out['agent_id'] else ''))
    print(table(table_rows(cast('OptimizeOut', out)), list(TABLE_COLUMNS)))
    print(f'context-window fit from the newest {sample["calls"]:,} calls'
          + (' (all of them)' if sample['complete'] else f' (at most {sample["limit"]:,})'))
    print(out['note'])
    return 0
