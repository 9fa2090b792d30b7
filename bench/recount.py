"""Budget counters on a large history: how long the recount takes that a start-up runs, and that a policy or
threshold change runs behind the ledger's write gate (ingest waits that long), on a small and a large history.

    .venv/bin/python bench/recount.py [--small /tmp/sg-bench/sqlite-10k.db] [--large /tmp/sg-bench/sqlite-5m.db]
                                      [--runs 10] [--no-serve]

Each database (bench/dataset.py's) is copied with SQLite's backup and given the nine policies of
tests/services/budget/test_recount.py: per user, a project for a week, per tag for a month, per session, two custom
ranges (one on a tag, 40 days back), and session periods on users, tags and a provider; plus a daily limit. Then, on
each copy: `Checker.start()` (the start-up recount) once, `Checker.rebuild()` (a policy change's recount, the write
gate closed throughout) `--runs` times; and, unless `--no-serve`, a real server process started on the copy, timed
from its launch to its first answer of `GET /api/v1/health`. Targets (issue 14): a recount under 100 ms at 5M
events, start-up in seconds.
"""
from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.budget import limits  # noqa: E402
from services.budget.checker import Checker  # noqa: E402
from services.core.db import create_db_engine, upgrade  # noqa: E402
from services.live.hub import EventHub  # noqa: E402
from tests.support.policies import create_every_kind_of_policy  # noqa: E402
from tests.support.servers import start_server  # noqa: E402

ZONE = ZoneInfo('UTC')
TARGET_MS = 100.0


def add_policies(url: str) -> int:
    """The policies of tests/support/policies.py (those of tests/services/budget/test_recount.py) and a daily
    limit; how many."""
    engine = create_db_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        count = create_every_kind_of_policy(conn, datetime.now(UTC).date())
        limits.set_limit(conn, 'day', 100_000_000)
    engine.dispose()
    return count + 1


def measure(url: str, runs: int) -> tuple[float, list[float], int]:
    """(start-up recount ms, rebuild ms each run, counters)."""
    engine = create_db_engine(url)
    checker = Checker(engine, EventHub(), ZONE)
    started = time.perf_counter()
    checker.start()
    start_ms = (time.perf_counter() - started) * 1000
    rebuilds = []
    for _ in range(runs):
        started = time.perf_counter()
        checker.rebuild()
        rebuilds.append((time.perf_counter() - started) * 1000)
    counters = len(checker.counters.snapshot())
    engine.dispose()
    return start_ms, rebuilds, counters


def serve_seconds(workdir: Path, url: str) -> float:
    started = time.perf_counter()
    server = start_server(workdir, url, timeout=600, SPENDGAUGE_LOG_LEVEL='WARNING')
    took = time.perf_counter() - started
    server.stop()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--small', type=Path, default=Path('/tmp/sg-bench/sqlite-10k.db'))
    parser.add_argument('--large', type=Path, default=Path('/tmp/sg-bench/sqlite-5m.db'))
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--no-serve', action='store_true', help='do not time a server start-up')
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for label, source in (('small', args.small), ('large', args.large)):
            copy = Path(tmp) / f'{label}.db'
            with sqlite3.connect(source) as db, sqlite3.connect(copy) as target:
                db.backup(target)
            url = f'sqlite:///{copy}'
            with sqlite3.connect(copy) as db:
                events = db.execute('SELECT count(*) FROM usage_events').fetchone()[0]
            count = add_policies(url)
            start_ms, rebuilds, counters = measure(url, args.runs)
            p50, top = statistics.median(rebuilds), max(rebuilds)
            line = (f'{label} ({events:,} events, {count} policies, {counters:,} counters): start-up recount '
                    f"{start_ms:.0f} ms; a policy change's recount (write gate closed) p50 {p50:.1f} ms, max "
                    f'{top:.1f} ms over {len(rebuilds)} runs')
            if not args.no_serve:
                line += f'; a server on it answers /health {serve_seconds(Path(tmp), url):.1f} s after its launch'
            print(line, flush=True)
            if label == 'large':
                met = top < TARGET_MS
                ok = ok and met
                print(f'target: the write gate closed for under {TARGET_MS:.0f} ms at {events:,} events: '
                      f'{"met" if met else "MISSED"} (max {top:.1f} ms)')
    print('  targets met' if ok else '  TARGETS MISSED')


if __name__ == '__main__':
    main()
