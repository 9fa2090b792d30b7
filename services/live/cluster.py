"""Several SpendGauge processes on one database.

- `Leadership`: the scheduled jobs (pulls, anomaly and forecast checks) run on one instance only, the holder of a
  session-level advisory lock on a connection of its own. When that instance dies PostgreSQL drops the lock, and
  another instance takes it at its next tick. With SQLite the server is the one long-running writer: it leads.
- `Bridge`: what one process changes reaches the others: LISTEN/NOTIFY on PostgreSQL, the `notices` table on SQLite
  (how a CLI command with `--db` reaches the server on the same file). Each process announces its changes (coalesced:
  at most one notice every `notify_interval_s`); on a peer's notice it publishes a correction on its own hub, so its
  budget counters recount from the database (exact, behind the ledger's write gate) and its dashboards reload (at
  most one recount every `recount_interval_s`).
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, delete, func, insert, select

from services.core.db import create_db_engine
from services.core.tables import NOTICES
from services.live.hub import EventHub
from services.live.topics import BRIDGED_TOPICS, LiveEvent, UsageChanged

log = logging.getLogger(__name__)
LOCK_KEY = 0x5350454E44  # 'SPEND': the advisory lock of the scheduled jobs
CHANNEL = 'spendgauge'
RECONNECT_S = 2.0
RECOUNT_SHARE = 10  # after a recount that took t seconds, the next one waits at least 10 t
NOTICE_KEEP = timedelta(minutes=10)


def _is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == 'postgresql'


def _connect(engine: Engine) -> Any:
    """A psycopg connection of its own (autocommit), outside SQLAlchemy's pool: it lives as long as the process."""
    import psycopg

    url = engine.url.set(drivername='postgresql').render_as_string(hide_password=False)
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


class Leadership:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Any = None
        self._lock = threading.Lock()
        self._was_leader: bool | None = None

    def is_leader(self) -> bool:
        """True while this instance holds the lock (taking it when it is free). One round trip on PostgreSQL."""
        if not _is_postgres(self.engine):
            return True
        with self._lock:
            leader = self._check()
            if leader != self._was_leader:
                log.info('this instance %s the scheduled jobs', 'runs' if leader else 'leaves to another instance')
                self._was_leader = leader
            return leader

    @property
    def role(self) -> Literal['leader', 'standby', 'starting']:
        """'leader' or 'standby' as of the last scheduler tick ('starting' before it)."""
        if not _is_postgres(self.engine):
            return 'leader'
        if self._was_leader is None:
            return 'starting'
        return 'leader' if self._was_leader else 'standby'

    def _check(self) -> bool:
        if self._conn is not None:
            try:
                self._conn.execute('SELECT 1')
                return True
            except Exception:
                log.warning('lost the connection that held the scheduler lock')
                self._drop()
        try:
            conn = _connect(self.engine)
            if conn.execute('SELECT pg_try_advisory_lock(%s)', (LOCK_KEY,)).fetchone()[0]:
                self._conn = conn
                return True
            conn.close()
        except Exception as exc:
            log.warning('could not ask for the scheduler lock: %s', type(exc).__name__)
        return False

    def _drop(self) -> None:
        try:
            self._conn.close()
        except Exception:
            pass
        self._conn = None

    def release(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._drop()  # closing the session releases its advisory locks
            self._was_leader = None


class _NotifyChannel:
    """PostgreSQL: NOTIFY to tell, LISTEN to hear, each on a connection of its own."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sender: Any = None
        self._listener: Any = None

    def tell(self, payload: str) -> None:
        self._sender = self._sender or _connect(self.engine)
        self._sender.execute('SELECT pg_notify(%s, %s)', (CHANNEL, payload))

    def hear(self, timeout: float) -> tuple[list[str], bool]:
        """The payloads of the notices that arrived within `timeout`; True when this is a new connection (what was
        said while nobody listened is lost)."""
        fresh = self._listener is None
        if fresh:
            self._listener = _connect(self.engine)
            self._listener.execute(f'LISTEN {CHANNEL}')
        return [n.payload for n in self._listener.notifies(timeout=timeout, stop_after=100)], fresh

    def close_sender(self) -> None:
        _close(self._sender)
        self._sender = None

    def close_listener(self) -> None:
        _close(self._listener)
        self._listener = None

    def dispose(self) -> None:
        self.close_sender()
        self.close_listener()


class _NoticeTable:
    """SQLite: a row in `notices` to tell, polling for rows after the last one seen to hear, on an engine of its own
    (like PostgreSQL's connections, outside the app's pool). Rows older than NOTICE_KEEP are pruned by whoever tells."""

    def __init__(self, engine: Engine, stopped: threading.Event) -> None:
        self.engine = create_db_engine(engine.url.render_as_string(hide_password=False))
        self._stopped = stopped
        self._last: int | None = None

    def tell(self, payload: str) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(insert(NOTICES).values(payload=payload, created_at=now))
            conn.execute(delete(NOTICES).where(NOTICES.c.created_at < now - NOTICE_KEEP))

    def hear(self, timeout: float) -> tuple[list[str], bool]:
        with self.engine.connect() as conn:
            if self._last is None:  # from now on: the counters were just counted from the database
                self._last = conn.execute(select(func.max(NOTICES.c.id))).scalar() or 0
                return [], False
            self._stopped.wait(timeout)
            rows = conn.execute(select(NOTICES.c.id, NOTICES.c.payload).where(NOTICES.c.id > self._last)
                                .order_by(NOTICES.c.id).limit(100)).all()
        if rows:
            self._last = rows[-1].id
        return [r.payload for r in rows], False

    def close_sender(self) -> None:
        pass

    def close_listener(self) -> None:
        self._last = None

    def dispose(self) -> None:
        self.engine.dispose()


class Bridge:
    def __init__(self, engine: Engine, hub: EventHub, notify_interval_s: float = 0.2,
                 recount_interval_s: float = 1.0) -> None:
        self.engine = engine
        self.hub = hub
        self.instance = uuid.uuid4().hex[:12]
        self.notify_interval_s = notify_interval_s
        self.recount_interval_s = recount_interval_s
        self._topics: set[str] = set()
        self._wake = threading.Condition()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Any = None
        self._channel = _NotifyChannel(engine) if _is_postgres(engine) else _NoticeTable(engine, self._stopped)
        self.received = 0  # peers' notices heard (for tests and the health view)

    def start(self) -> None:
        if self._threads:
            return
        self._unsubscribe = self.hub.subscribe(self._on_local)
        for target, name in ((self._send_loop, 'cluster-notify'), (self._listen_loop, 'cluster-listen')):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stopped.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        self._channel.dispose()

    def _on_local(self, event: LiveEvent) -> None:
        if event.topic in BRIDGED_TOPICS and not (isinstance(event, UsageChanged) and event.remote):
            with self._wake:
                self._topics.add(event.topic)
                self._wake.notify()

    def _send_loop(self) -> None:
        """Until stopped, and then once more: what was published just before `stop` (a CLI command's change) still
        reaches the other instances."""
        while True:
            with self._wake:
                while not self._topics and not self._stopped.is_set():
                    self._wake.wait()
                topics, self._topics = sorted(self._topics), set()
            if not topics:
                break  # stopped, nothing left to tell
            try:
                self._channel.tell(json.dumps({'from': self.instance, 'topics': topics}))
            except Exception as exc:
                log.warning('could not tell the other instances of %s: %s', ', '.join(topics), type(exc).__name__)
                self._channel.close_sender()
                if self._stopped.is_set():
                    break
                with self._wake:
                    self._topics.update(topics)  # say it again once the database is back
                self._stopped.wait(RECONNECT_S)
                continue
            if not self._stopped.is_set():
                self._stopped.wait(self.notify_interval_s)  # coalesce what comes meanwhile into the next notice
        self._channel.close_sender()

    def _listen_loop(self) -> None:
        pending: set[str] = set()
        next_recount = 0.0
        while not self._stopped.is_set():
            try:
                payloads, fresh = self._channel.hear(min(0.5, self.recount_interval_s))
            except Exception as exc:
                if not self._stopped.is_set():
                    log.warning("lost the connection for the other instances' notices: %s", type(exc).__name__)
                self._channel.close_listener()
                self._stopped.wait(RECONNECT_S)
                continue
            if fresh:
                pending.add('usage')  # what peers did while we were not listening: recount once
            for payload in payloads:
                try:
                    message = json.loads(payload)
                except ValueError:
                    continue
                if message.get('from') != self.instance:
                    self.received += 1
                    pending.update(message.get('topics') or ())
            if pending and time.monotonic() >= next_recount:
                pending, started = set(), time.monotonic()
                self.hub.publish(UsageChanged(rows=None, remote=True))  # a correction: recount, reload
                took = time.monotonic() - started  # the listeners ran inline: spend at most a tenth of the time so
                next_recount = started + max(self.recount_interval_s, RECOUNT_SHARE * took)
        self._channel.close_listener()


def _close(conn: Any) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:
            pass
