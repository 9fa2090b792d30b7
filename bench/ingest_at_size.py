"""Ingest into a large history against ingest into an empty database, in the same run: does the ledger hold its rate
as the database grows?

    .venv/bin/python bench/ingest_at_size.py [--large /tmp/sg-bench/sqlite-5m.db] [--events 50000] [--batch 500]
                                             [--pragmas 'mmap_size=0;cache_size=-65536']

The large database (built by bench/dataset.py) is copied, and the next hour's events (new sessions, random event ids,
as bench/dataset.py draws them) are recorded into the copy through `Ledger.record_batch`; the same events go into an
empty database before and after (the baseline: the mean of the two). `--pragmas` adds SQLite pragmas to every
connection after the engine's own, to try settings. Target (issue 14): the rate into the large database at least
1/1.5 of the rate into the empty one.
"""
from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataset import SESSIONS, events  # noqa: E402  (bench/ is the script's folder: first on sys.path)
from sqlalchemy import event, func, select  # noqa: E402

from app.runtime import tune_gc  # noqa: E402
from services.core.db import create_db_engine, upgrade  # noqa: E402
from services.core.periods import as_utc  # noqa: E402
from services.core.tables import EVENTS  # noqa: E402
from services.live.hub import EventHub  # noqa: E402
from services.usage.ledger import Ledger  # noqa: E402
from services.usage.pricing import Pricer  # noqa: E402

TARGET_RATIO = 1.5


def ingest(path: Path, batch_events: list[dict[str, Any]], batch: int, pragmas: list[str]) -> float:
    engine = create_db_engine(f'sqlite:///{path}')
    if pragmas:
        def extra(dbapi_connection: Any, _record: Any) -> None:
            for pragma in pragmas:
                dbapi_connection.execute(f'PRAGMA {pragma}')
        event.listen(engine, 'connect', extra)
    upgrade(engine)
    ledger = Ledger(engine, Pricer(), EventHub())
    tune_gc()
    start = time.perf_counter()
    for i in range(0, len(batch_events), batch):
        results = ledger.record_batch(batch_events[i:i + batch])
        assert all(r.status == 'stored' for r in results), [r for r in results if r.status != 'stored'][:3]
    elapsed = time.perf_counter() - start
    engine.dispose()
    return len(batch_events) / elapsed


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy (the WAL folded in first), replacing any earlier one."""
    for suffix in ('', '-wal', '-shm'):
        Path(f'{target}{suffix}').unlink(missing_ok=True)
    con = sqlite3.connect(source)
    con.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    con.close()
    shutil.copyfile(source, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--large', type=Path, default=Path('/tmp/sg-bench/sqlite-5m.db'))
    parser.add_argument('--events', type=int, default=50_000)
    parser.add_argument('--batch', type=int, default=500)
    parser.add_argument('--pragmas', default='', help="extra SQLite pragmas, ';'-separated")
    parser.add_argument('--work', type=Path, default=Path('/tmp/sg-bench/work'))
    args = parser.parse_args()
    pragmas = [p.strip() for p in args.pragmas.split(';') if p.strip()]
    args.work.mkdir(parents=True, exist_ok=True)
    copy = args.work / 'large-copy.db'
    copy_database(args.large, copy)
    engine = create_db_engine(f'sqlite:///{copy}')
    with engine.connect() as conn:
        size = conn.execute(select(func.count()).select_from(EVENTS)).scalar_one()
        last = as_utc(conn.execute(select(func.max(EVENTS.c.ts))).scalar_one())
    engine.dispose()
    # the next hour: new sessions (a session runs about 3 hours at 20k a month), random event ids
    new = list(events(args.events, seed=1234, end=last + timedelta(hours=1), span=timedelta(hours=1),
                      sessions=max(1, SESSIONS * args.events // max(size, 1)), first_session=SESSIONS))
    empty = args.work / 'empty.db'

    def into_empty() -> float:
        for suffix in ('', '-wal', '-shm'):
            Path(f'{empty}{suffix}').unlink(missing_ok=True)
        return ingest(empty, new, args.batch, pragmas)

    first = into_empty()
    large = ingest(copy, new, args.batch, pragmas)
    second = into_empty()
    baseline = (first + second) / 2
    ratio = baseline / large
    print(f'ledger ingest of {args.events:,} events in batches of {args.batch:,} (SQLite'
          + (f'; {"; ".join(pragmas)}' if pragmas else '') + ')')
    print(f'  into an empty database     {baseline:>8,.0f} events/s   (baseline; runs {first:,.0f} and {second:,.0f})')
    print(f'  into {size:>10,} events    {large:>8,.0f} events/s   {ratio:.2f}x slower   '
          f'[target <= {TARGET_RATIO}x: {"pass" if ratio <= TARGET_RATIO else "FAIL"}]')
    for suffix in ('', '-wal', '-shm'):
        Path(f'{copy}{suffix}').unlink(missing_ok=True)
        Path(f'{empty}{suffix}').unlink(missing_ok=True)


if __name__ == '__main__':
    main()
