"""Ingest with the JSONL audit log on and off: the ledger in process (the hot path: POST /usage/batch runs it on a
worker thread), on SQLite, the same events in the same run, rounds alternating so the machine's drift hits both.

    .venv/bin/python bench/audit_log.py [--events 50000] [--batch 2000] [--rounds 3]

With it on, each batch only puts a reference on the journal's queue; its thread serialises, scrubs and appends
the lines (competing for the GIL, which is what this measures). Also printed: how long the writer needs after the
last batch to have every line on disk (its lag), and the lines written.

Target: ingest with the log at least 0.8x the rate without it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import make_events  # noqa: E402  (bench/, the script's own folder, is on sys.path)

from app.runtime import tune_gc  # noqa: E402
from services.audit.journal import Journal  # noqa: E402
from services.core.db import create_db_engine, upgrade  # noqa: E402
from services.live.hub import EventHub  # noqa: E402
from services.usage.ledger import Ledger  # noqa: E402
from services.usage.pricing import Pricer  # noqa: E402

TARGET = 0.8


def run(workdir: Path, events: list[dict], batch: int, with_log: bool, tag: str) -> tuple[float, float, int]:
    """Events/s of recording `events`; with the log: the writer's lag after the last batch (s), and lines."""
    engine = create_db_engine(f'sqlite:///{workdir / f"{tag}.db"}')
    upgrade(engine)
    ledger = Ledger(engine, Pricer(), EventHub())
    journal = Journal(workdir / f'log-{tag}') if with_log else None
    ledger.journal = journal
    ledger.record_batch(make_events(10, f'warm-{tag}'))
    tune_gc()
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        ledger.record_batch(events[i:i + batch])
    took = time.perf_counter() - started
    lag, lines = 0.0, 0
    if journal is not None:
        done = time.perf_counter()
        journal.flush(timeout=600)
        lag = time.perf_counter() - done
        journal.close()
        lines = journal.written
        assert journal.failed == 0 and journal.dropped == 0, (journal.failed, journal.dropped)
    ledger.close()
    engine.dispose()
    return len(events) / took, lag, lines


def writer_cost(workdir: Path, events: list[dict], batch: int) -> float:
    """Seconds per event the writer thread spends (serialise, check for secrets, append), measured on this thread
    alone: what it takes from ingest when the two share the GIL, without the run-to-run noise of the ratio."""
    journal = Journal(workdir / 'cost')
    journal.close()  # its thread is not needed: the same work is done here
    started = time.perf_counter()
    with (workdir / 'cost.jsonl').open('ab') as file:
        for i in range(0, len(events), batch):
            file.write(b''.join(journal._lines(('events', datetime.now(UTC), events[i:i + batch]))))
    return (time.perf_counter() - started) / len(events)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--events', type=int, default=50_000)
    parser.add_argument('--batch', type=int, default=2000)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    off: list[float] = []
    on: list[float] = []
    lags: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            events = make_events(args.events, f'r{r}')
            for with_log in ((False, True) if r % 2 == 0 else (True, False)):
                rate, lag, lines = run(Path(tmp), events, args.batch, with_log, f'{r}-{int(with_log)}')
                (on if with_log else off).append(rate)
                if with_log:
                    lags.append(lag)
                    assert lines == args.events + 10, lines
                print(f'round {r + 1}: log {"on " if with_log else "off"} {rate:,.0f} events/s'
                      + (f' (writer done {lag * 1000:.0f} ms after the last batch, {lines:,} lines)' if with_log
                         else ''))
        cost = writer_cost(Path(tmp), make_events(args.events, 'cost'), args.batch)
    ratio = statistics.median(on) / statistics.median(off)
    print(f'ingest without the audit log: {statistics.median(off):,.0f} events/s (median of {args.rounds})')
    print(f'ingest with the audit log:    {statistics.median(on):,.0f} events/s; writer lag median '
          f'{statistics.median(lags) * 1000:.0f} ms')
    print(f'writer work per event: {cost * 1e6:.1f} us, against {1e6 / statistics.median(off):.1f} us of ingest '
          f'per event ({cost * statistics.median(off):.1%})')
    print(f'ratio with/without: {ratio:.2f} (target >= {TARGET}: {"met" if ratio >= TARGET else "MISSED"})')


if __name__ == '__main__':
    main()
