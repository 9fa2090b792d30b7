"""CLI start-up: how long `spendgauge --help` takes (every command through a server pays this), against the bare
interpreter and against loading the database layer that only --db needs, measured in the same run.

    .venv/bin/python bench/cli_start.py [--runs 15]

Each is a fresh `python` process, timed from spawn to exit; the median of the runs is printed, with the ratio to the
bare interpreter. Target: the CLI costs at most half of what loading the database layer does.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    'bare interpreter (python -c pass)': ['-c', 'pass'],
    'spendgauge --help': ['-m', 'app', '--help'],
    'the CLI with the --db layer (app.cli.direct)': ['-c', 'import app.cli.main, app.cli.direct, app.runtime'],
}


def median_seconds(args: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=15)
    runs = parser.parse_args().runs
    results = {name: median_seconds(args, runs) for name, args in CASES.items()}
    base = results['bare interpreter (python -c pass)']
    for name, seconds in results.items():
        print(f'{name:48} {seconds * 1000:7.0f} ms  {seconds / base:5.1f}x the bare interpreter')
    cli, heavy = results['spendgauge --help'], results['the CLI with the --db layer (app.cli.direct)']
    verdict = 'met' if cli <= heavy / 2 else 'MISSED'
    print(f'target: the CLI at most half of the --db layer: {cli / heavy:.2f} ({verdict})')


if __name__ == '__main__':
    main()
