"""Re-pricing a large history (`spendgauge prices recalculate`): events per second of a dry run and of a real run,
and the memory it takes (it reads in keyset batches, so it must not grow with the history).

    .venv/bin/python bench/reprice.py [--events 200000] [--db URL]   (default: a fresh SQLite file)

Records `--events` events over 60 days through the ledger (a tenth reported), switches to changed genai-prices data
(tests/support/price_data.py: gpt-4o and claude-sonnet-4-5 cost more), then times a dry run and the re-pricing of
the whole range, and checks that every rollup equals the events afterwards (tests/support/rollups.py).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from services.core.db import create_db_engine, upgrade  # noqa: E402
from services.live.hub import EventHub  # noqa: E402
from services.usage.ledger import Ledger  # noqa: E402
from services.usage.pricing import Pricer, parse_price_data  # noqa: E402
from services.usage.repricing import Recalculation  # noqa: E402
from tests.services.usage.test_repricing import NEW_PRICES, history  # noqa: E402
from tests.support import rollups  # noqa: E402
from tests.support.price_data import published  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--events', type=int, default=200_000)
    parser.add_argument('--db', help='a database URL (PostgreSQL: emptied first)')
    args = parser.parse_args()
    url = args.db or f'sqlite:///{tempfile.mkdtemp()}/reprice.db'
    engine = create_db_engine(url)
    if engine.dialect.name == 'postgresql':
        with engine.begin() as conn:
            conn.execute(text('DROP SCHEMA public CASCADE'))
            conn.execute(text('CREATE SCHEMA public'))
    upgrade(engine)
    pricer = Pricer()
    ledger = Ledger(engine, pricer, EventHub())
    now = datetime.now(UTC)
    started = time.perf_counter()
    for first in range(0, args.events, 10_000):
        batch = history(now, min(10_000, args.events - first), seed=first)
        for n, event in enumerate(batch):
            event['event_id'] = f'b{first + n}'
            event['ts'] = (now - timedelta(minutes=(first + n) * 60 * 24 * 60 // args.events + 1)).isoformat()
        ledger.record_batch(batch)
    print(f'{engine.dialect.name}: recorded {args.events:,} events in {time.perf_counter() - started:.1f} s')
    pricer.use_data(parse_price_data(json.dumps(published(NEW_PRICES)), 'bench data'))
    start, end = now - timedelta(days=61), now + timedelta(minutes=1)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name in ('dry run', 'apply'):
        run = Recalculation(ledger, start, end, 'bench')
        began = time.perf_counter()
        result = run.dry_run() if name == 'dry run' else run.apply()
        took = time.perf_counter() - began
        print(f'{name}: {result["events_examined"]:,} examined, {result["events_changed"]:,} changed in {took:.1f} s '
              f'({result["events_examined"] / took:,.0f} events/s)')
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f'peak RSS {rss_before / 1024:.0f} MiB before the runs, {rss_after / 1024:.0f} MiB after')
    with engine.connect() as conn:
        print(f'rollups exact: {rollups.assert_exact(conn):,} rows compared')
    ledger.close()
    engine.dispose()


if __name__ == '__main__':
    main()
