"""Planner speed: the exact search (`services.planner.plan`) against the greedy fallback on the same instances in
the same run, for 100, 300 and 500 tasks and budgets of $100 and $1,000.

    .venv/bin/python bench/planner.py [--repeat 5] [--seed 1]

Instances, all with costs in micro-dollars from $0.01 to $50 (not whole cents):
- `small ints`: priorities 1-10, as people rank work (the frontier is bounded by the total priority);
- `decimals`: priorities with three decimal places up to 1,000 (the frontier is bounded by the budget in cents);
- `priority = cost`: every task worth exactly what it costs, the knapsack's hard case (the fractional bound prunes
  nothing, so the frontier grows until the work budget `EXACT_WORK` is spent and the greedy takes over).

Each figure is the median wall time of `--repeat` runs of `plan(...)`; the greedy is the same call with
`exact_work=0`. The gap column is how much total priority the greedy leaves on the table.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.insights.planner import EXACT_WORK, Plan, PlanTask, plan  # noqa: E402

NOW = datetime.now(UTC)


def instance(kind: str, n: int, rng: random.Random) -> list[PlanTask]:
    items = []
    for i in range(n):
        cost = rng.randint(10_000, 50_000_000)
        if kind == 'small ints':
            priority: int | Decimal = rng.randint(1, 10)
        elif kind == 'decimals':
            priority = Decimal(rng.randint(1, 1_000_000)) / 1000
        else:
            priority = -(-cost // 10_000)  # its cost in cents
        items.append(PlanTask(f't{i}', priority, cost))
    return items


def timed(items: list[PlanTask], budget: int, repeat: int, exact_work: int) -> tuple[float, Plan]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = plan(items, budget, NOW, exact_work=exact_work)
        times.append(time.perf_counter() - started)
    assert result is not None
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f'exact work budget: {EXACT_WORK:,} Pareto states; median of {args.repeat} runs')
    print(f'{"tasks":>5} {"budget":>7} {"priorities":<16} {"exact":>10} {"method":<7} {"greedy":>9} {"gap":>7} '
          f'{"run now":>7}')
    for n in (100, 300, 500):
        for budget_usd in (100, 1000):
            for kind in ('small ints', 'decimals', 'priority = cost'):
                items = instance(kind, n, rng)
                exact_s, exact = timed(items, budget_usd * 1_000_000, args.repeat, EXACT_WORK)
                greedy_s, greedy = timed(items, budget_usd * 1_000_000, args.repeat, 0)
                gap = 1 - greedy.total_priority / exact.total_priority if exact.total_priority else 0
                print(f'{n:>5} ${budget_usd:>6,} {kind:<16} {exact_s * 1000:>8.1f}ms {exact.method:<7} '
                      f'{greedy_s * 1000:>7.1f}ms {float(gap):>7.3%} {len(exact.run_now):>7}')


if __name__ == '__main__':
    main()
