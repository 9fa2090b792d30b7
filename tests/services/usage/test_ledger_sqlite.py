"""The ledger on a SQLite file: every write goes through one connection (whose page cache then stays warm), and the
WAL is checkpointed on a thread of its own rather than inside the commits of ingest."""
from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, QueuePool, event

from services.core.db import WAL_AUTOCHECKPOINT_PAGES
from services.live.hub import EventHub
from services.usage.ledger import Ledger
from services.usage.pricing import Pricer

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _events(start: int, count: int) -> list[dict[str, Any]]:
    return [{'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 10, 'output_tokens': 5, 'agent_id': 'a',
             'session_id': 's', 'ts': T0 + timedelta(seconds=i), 'event_id': f'e-{i}'}
            for i in range(start, start + count)]


def test_every_write_goes_through_one_connection(sqlite_engine: Engine) -> None:
    ledger = Ledger(sqlite_engine, Pricer(), EventHub())
    writers: set[int] = set()

    def note(conn: Any) -> None:  # only the ledger commits here
        writers.add(id(conn.connection.dbapi_connection))
    event.listen(sqlite_engine, 'commit', note)
    try:
        with sqlite_engine.connect() as reader:  # the pool hands this one out otherwise, in turn with the others
            for batch in range(5):
                ledger.record_batch(_events(batch * 10, 10))
                reader.exec_driver_sql('SELECT count(*) FROM usage_events').scalar()
    finally:
        event.remove(sqlite_engine, 'commit', note)
    assert len(writers) == 1
    assert ledger.record_batch(_events(0, 1))[0].status == 'duplicate'  # and reads see what it wrote


def test_the_wal_is_checkpointed_in_the_background(sqlite_engine: Engine) -> None:
    ledger = Ledger(sqlite_engine, Pricer(), EventHub())
    with sqlite_engine.connect() as conn:
        assert conn.exec_driver_sql('PRAGMA wal_autocheckpoint').scalar() == WAL_AUTOCHECKPOINT_PAGES
    ledger.record_batch(_events(0, 200))
    assert ledger._checkpointer is not None
    ledger._checkpointer._executor.submit(lambda: None).result(timeout=30)  # the requested checkpoint has run
    # immutable=1 reads the database file alone, without the WAL: the events are there, so a checkpoint copied them
    path = sqlite_engine.url.database
    with sqlite3.connect(f'file:{path}?immutable=1', uri=True) as copy:
        assert copy.execute('SELECT count(*) FROM usage_events').fetchone() == (200,)


def test_closing_the_ledger_closes_its_connection_and_ends_the_checkpoint_thread(sqlite_engine: Engine) -> None:
    before = set(threading.enumerate())  # other ledgers' checkpoint threads may be about: only this one's count
    ledger = Ledger(sqlite_engine, Pricer(), EventHub())
    pool = sqlite_engine.pool
    assert isinstance(pool, QueuePool)
    ledger.record_batch(_events(0, 10))
    assert pool.checkedout() == 1  # the writer's, held between writes
    mine = [t for t in threading.enumerate() if t.name.startswith('wal-checkpoint') and t not in before]
    assert mine
    ledger.close()
    assert pool.checkedout() == 0
    assert not any(t.is_alive() for t in mine)
    assert ledger.record_batch(_events(10, 1))[0].status == 'stored'  # a later write opens it again
    ledger.close()
