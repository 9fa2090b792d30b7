"""Build a realistic usage history through the real ledger, for the read benchmarks (bench/queries.py) and for
measuring how ingest holds up as the database grows.

    .venv/bin/python bench/dataset.py --url sqlite:////tmp/sg-bench/sqlite-5m.db [--events 5000000] [--seed 1]
    .venv/bin/python bench/dataset.py --url postgresql+psycopg://postgres@127.0.0.1:55432/sg_bench_5m

(PostgreSQL: the database must exist, e.g. `createdb sg_bench_5m`, and be empty; `make bench-dataset-pg`.)

The history: `--events` LLM calls over the 30 days ending now (or `--end`), time-ordered, from 50 agents in 20,000
sessions working on 500 tasks, for 40 users in 12 projects, with tags and realistic providers and models; event ids
are random (uuid4-like, from the seed) as they are in real life. Every batch goes through `Ledger.record_batch`, so
the rollups and session/agent/task totals are exactly what a server would hold. The same seed builds the same
history (apart from `created_at`). Prints the rate for each tenth (each million from 5M up) so any slowdown with
size shows.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.runtime import tune_gc  # noqa: E402
from services.core.db import create_db_engine, describe, sqlite_file, upgrade  # noqa: E402
from services.live.hub import EventHub  # noqa: E402
from services.usage.ledger import Ledger  # noqa: E402
from services.usage.pricing import Pricer  # noqa: E402

AGENTS = 50
SESSIONS = 20_000
TASKS = 500
USERS = 40
PROJECTS = 12
DAYS = 30
# (provider, model, channel, weight): what a mixed fleet calls, cheap models most often
MODELS = [('openai', 'gpt-4o-mini', 'litellm', 20), ('openai', 'gpt-4o', 'litellm', 8),
          ('openai', 'gpt-4.1', 'direct', 6), ('openai', 'gpt-4.1-mini', 'direct', 10),
          ('openai', 'o3-mini', 'litellm', 4),
          ('anthropic', 'claude-sonnet-4-5', 'direct', 14), ('anthropic', 'claude-haiku-4-5', 'litellm', 10),
          ('anthropic', 'claude-opus-4-1', 'direct', 2), ('google', 'gemini-2.5-flash', 'litellm', 8),
          ('google', 'gemini-2.5-pro', 'litellm', 3), ('openrouter', 'meta-llama/llama-3.3-70b-instruct', 'litellm', 5),
          ('openrouter', 'openai/gpt-4o-mini', 'litellm', 4), ('mistral', 'mistral-large-latest', 'direct', 2),
          ('deepseek', 'deepseek-chat', 'direct', 4)]
TAGS = ['prod', 'staging', 'batch', 'interactive', 'eval', 'retry', 'tool-call', 'rag']
SOURCES = ['api'] * 6 + ['sdk'] * 3 + ['litellm_callback']


def events(count: int, seed: int, end: datetime, span: timedelta = timedelta(days=DAYS), sessions: int = SESSIONS,
           first_session: int = 0) -> Iterator[dict[str, Any]]:
    """`count` events over the `span` (DAYS) ending at `end`, oldest first. Sessions follow one another through the
    span (each runs for a few hours of the month around its slot); a session keeps to a few agents, one user and a few
    tasks. (bench/ingest_at_size.py draws the next hour's events with new sessions from here.)"""
    rng = random.Random(seed)
    start = end - span
    seconds = span.total_seconds()
    models = [m[:3] for m in MODELS]
    weights = [m[3] for m in MODELS]
    step = seconds / count
    for i in range(count):
        ts = start + timedelta(seconds=min(seconds - 1e-3, i * step + rng.random() * step))
        ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)  # milliseconds: equal timestamps do happen
        slot = i * sessions // count
        session = first_session + min(sessions - 1, max(0, slot + rng.randint(-8, 8)))
        agent = (session * 7 + rng.randint(0, 3)) % AGENTS
        task = (session // 40 + rng.randint(0, 2)) % TASKS
        provider, model, channel = rng.choices(models, weights)[0]
        input_tokens = int(rng.lognormvariate(7.5, 1.0)) + 50
        cache_read = rng.randint(0, input_tokens // 2) if rng.random() < 0.4 else 0
        tags = [TAGS[session % 2]] + ([rng.choice(TAGS[2:])] if rng.random() < 0.5 else [])
        yield {
            'event_id': f'{rng.getrandbits(128):032x}', 'source': rng.choice(SOURCES), 'channel': channel,
            'ts': ts, 'provider': provider, 'model': model, 'agent_id': f'agent-{agent:02d}',
            'session_id': f'session-{session:05d}', 'user_id': f'user-{session % USERS:02d}',
            'project': f'project-{task % PROJECTS:02d}', 'task_id': f'task-{task:03d}', 'tags': tags,
            'input_tokens': input_tokens, 'output_tokens': int(rng.lognormvariate(5.5, 1.0)) + 1,
            'cache_read_tokens': cache_read, 'latency_ms': rng.randint(150, 30_000),
        }


def build(url: str, count: int, seed: int, batch: int, end: datetime, report_every: int) -> float:
    """Write the history; returns the overall events/s."""
    engine = create_db_engine(url)
    upgrade(engine)
    ledger = Ledger(engine, Pricer(), EventHub())
    tune_gc()  # as the server does on start-up
    print(f'building {count:,} events into {describe(url)} (seed {seed}, batches of {batch:,})', flush=True)
    start = mark = time.perf_counter()
    done = 0
    pending: list[dict[str, Any]] = []
    for event in events(count, seed, end):
        pending.append(event)
        if len(pending) == batch or done + len(pending) == count:
            results = ledger.record_batch(pending)
            bad = [r for r in results if r.status != 'stored']
            assert not bad, bad[:3]
            before, done = done, done + len(pending)
            pending = []
            if done // report_every != before // report_every or done == count:
                now = time.perf_counter()
                size = ''
                if (path := sqlite_file(url)) is not None:
                    size = f'   file {path.stat().st_size / 2**30:.2f} GiB'
                print(f'  {done:>10,} events   last {report_every:,}: {report_every / (now - mark):>8,.0f} events/s'
                      f'   overall {done / (now - start):>8,.0f} events/s{size}', flush=True)
                mark = now
    elapsed = time.perf_counter() - start
    engine.dispose()
    print(f'done: {count:,} events in {elapsed:,.0f} s, {count / elapsed:,.0f} events/s', flush=True)
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--url', required=True, help='sqlite:////path/file.db or postgresql://...')
    parser.add_argument('--events', type=int, default=5_000_000)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--batch', type=int, default=500)
    parser.add_argument('--end', type=datetime.fromisoformat, default=None,
                        help='the end of the 30 days (ISO, UTC); default now')
    parser.add_argument('--force', action='store_true', help='replace an existing SQLite file')
    args = parser.parse_args()
    path = sqlite_file(args.url)
    if path is not None and path.exists():
        if not args.force:
            sys.exit(f'{path} exists; pass --force to replace it')
        for suffix in ('', '-wal', '-shm'):
            Path(f'{path}{suffix}').unlink(missing_ok=True)
    end = (args.end or datetime.now(UTC)).astimezone(UTC)
    report_every = 1_000_000 if args.events >= 5_000_000 else max(1, args.events // 10)
    build(args.url, args.events, args.seed, args.batch, end, report_every)


if __name__ == '__main__':
    main()
