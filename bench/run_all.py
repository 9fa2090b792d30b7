"""Run every benchmark under bench/ and print each figure that has a target, with pass/fail, in one table.

    .venv/bin/python bench/run_all.py [--only queries,ingest] [--skip live] [--quick] [--timeout 1800]

Each bench runs as its own process (one after another: they measure, so they must not share the machine), with its
own baselines as it prints them. From its output, every line that names a target (`target` or `goal`) is a figure;
its verdict is read from the line (ok, met, pass, True / MISSED, FAIL, False). A bench
that is missing (bench/concurrency.py and bench/live.py are optional), fails, or runs past --timeout is reported as
such and the others go on. `--quick` passes smaller sizes where a bench takes them (a smoke run, not figures to
quote). The read and ingest-at-size benches need the databases of bench/dataset.py (see bench/queries.py).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / 'bench'
SMALL_DB = Path('/tmp/sg-bench/sqlite-10k.db')
LARGE_DB = Path('/tmp/sg-bench/sqlite-5m.db')


@dataclass
class Bench:
    name: str
    script: str
    args: list[str] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)  # with --quick
    needs: tuple[Path, ...] = ()  # files it reads (the databases of bench/dataset.py)


BENCHES = [
    Bench('ingest', 'ingest.py', quick=['--events', '20000', '--batch', '2000']),
    Bench('check', 'check.py', quick=['--checks', '5000', '--requests', '300']),
    Bench('concurrency', 'concurrency.py'),
    Bench('live', 'live.py', quick=['--rounds', '5']),
    Bench('live at 5M', 'live.py', ['--db', str(LARGE_DB)], quick=['--db', str(LARGE_DB), '--rounds', '5'],
          needs=(LARGE_DB,)),
    Bench('forecast', 'forecast.py', quick=['--part', 'mae']),
    Bench('planner', 'planner.py', quick=['--repeat', '1']),
    Bench('overshoot', 'overshoot.py'),
    Bench('cli_start', 'cli_start.py', quick=['--runs', '3']),
    Bench('queries', 'queries.py', quick=['--runs', '5', '--seconds', '2'], needs=(SMALL_DB, LARGE_DB)),
    Bench('ingest at 5M', 'ingest_at_size.py', quick=['--events', '10000'], needs=(LARGE_DB,)),
    Bench('recount at 5M', 'recount.py', ['--small', str(SMALL_DB), '--large', str(LARGE_DB)],
          quick=['--small', str(SMALL_DB), '--large', str(LARGE_DB), '--runs', '3', '--no-serve'],
          needs=(SMALL_DB, LARGE_DB)),
]
FAIL = re.compile(r'\b(FAIL|FAILED|MISSED|missed|False)\b')
PASS = re.compile(r'\b(pass|passed|ok|met|True)\b')
FIGURE = re.compile(r'target|goal', re.IGNORECASE)


@dataclass
class Row:
    bench: str
    figure: str
    verdict: str  # pass, FAIL, ?, or the bench's state (missing, error, timeout)


def figures(bench: str, output: str) -> list[Row]:
    rows = []
    for line in output.splitlines():
        text = line.strip()
        if not text or not FIGURE.search(text):
            continue
        if text.lower() in ('targets met', 'targets missed'):
            continue  # the bench's own summary of the lines above
        verdict = 'FAIL' if FAIL.search(text) else 'pass' if PASS.search(text) else '?'
        rows.append(Row(bench, re.sub(r'\s{2,}', '  ', text), verdict))
    return rows


def run(bench: Bench, quick: bool, timeout: float) -> tuple[list[Row], float]:
    script = BENCH / bench.script
    if not script.exists():
        return [Row(bench.name, f'bench/{bench.script} is not there', 'missing')], 0.0
    missing = [str(p) for p in bench.needs if not p.exists()]
    if missing:
        return [Row(bench.name, f'needs {", ".join(missing)} (bench/dataset.py builds it)', 'missing')], 0.0
    command = [sys.executable, str(script), *(bench.quick if quick else bench.args)]
    print(f'--- {bench.name}: {" ".join(command[1:])}', flush=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or '')
        return [*figures(bench.name, out), Row(bench.name, f'no answer within {timeout:.0f} s', 'timeout')], timeout
    elapsed = time.perf_counter() - start
    print(done.stdout, end='', flush=True)
    rows = figures(bench.name, done.stdout)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ['(no error output)'])[-1]
        rows.append(Row(bench.name, f'exit status {done.returncode}: {last[:150]}', 'error'))
    elif not rows:
        rows.append(Row(bench.name, 'ran, but printed no figure with a target', '?'))
    return rows, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', help='comma-separated bench names')
    parser.add_argument('--skip', default='', help='comma-separated bench names')
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--timeout', type=float, default=1800.0, help='seconds per bench')
    args = parser.parse_args()
    only = set(args.only.split(',')) if args.only else None
    skip = set(filter(None, args.skip.split(',')))
    rows: list[Row] = []
    for bench in BENCHES:
        if (only and bench.name not in only) or bench.name in skip:
            continue
        found, elapsed = run(bench, args.quick, args.timeout)
        rows += found
        print(f'    ({elapsed:.0f} s)', flush=True)
    width = max([len(r.bench) for r in rows] + [5])
    print('\nall benchmarks' + (' (--quick: smoke run, not figures to quote)' if args.quick else ''))
    print(f'{"bench":<{width}}  {"verdict":<8} figure and target')
    for row in rows:
        print(f'{row.bench:<{width}}  {row.verdict:<8} {row.figure}')
    bad = [r for r in rows if r.verdict != 'pass']
    print(f'{len(rows) - len(bad)} of {len(rows)} pass' + (f'; {len(bad)} do not' if bad else ''))


if __name__ == '__main__':
    main()
