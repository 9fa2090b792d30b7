"""In-process event hub: every committed change publishes one typed event (services/live/topics.py); the checker,
the notifier, the dashboard feed and the cluster bridge subscribe.

Publishing is cheap and thread-safe (the ledger publishes from worker threads); listeners run on the thread that
publishes, so a listener that touches the UI must hand over to the event loop itself.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from services.live.topics import LiveEvent

log = logging.getLogger(__name__)
Listener = Callable[[LiveEvent], None]


class WriteGate:
    """Ledger writes pass in parallel from the start of their transaction until their event is published; a recount
    of in-memory totals closes the gate, waits for the writes inside, and so sees each event exactly once: either in
    the database it reads or in an event published after it has finished.

    A thread inside `passing` must not call `closed` (it would wait for itself): work that needs it is handed to
    `after_passing`, which runs it in the same thread once that thread is out of the gate."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._local = threading.local()  # this thread's depth in `passing`, and what to run when it is out
        self._inside = 0
        self._waiting = 0  # writes held out by the last closing: they pass before the gate closes again
        self._closed = False

    @contextmanager
    def passing(self) -> Iterator[None]:
        with self._cond:
            if self._closed:
                self._waiting += 1
                while self._closed:
                    self._cond.wait()
                self._waiting -= 1
                if not self._waiting:
                    self._cond.notify_all()
            self._inside += 1
        local = self._local
        local.depth = getattr(local, 'depth', 0) + 1
        try:
            yield
        finally:
            local.depth -= 1
            with self._cond:
                self._inside -= 1
                if not self._inside:
                    self._cond.notify_all()
            if not local.depth:
                self._run_after()

    def after_passing(self, job: Callable[[], None]) -> None:
        """Run `job` when this thread is out of the gate: now, or when its current write is through."""
        if getattr(self._local, 'depth', 0):
            self._local.__dict__.setdefault('after', []).append(job)
        else:
            job()

    def _run_after(self) -> None:
        jobs, self._local.after = getattr(self._local, 'after', []), []
        for job in jobs:
            try:
                job()
            except Exception:
                log.exception('a job after a ledger write failed')

    @contextmanager
    def closed(self) -> Iterator[None]:
        with self._cond:
            while self._closed or self._waiting:
                self._cond.wait()
            self._closed = True
            while self._inside:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()


class EventHub:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self.gate = WriteGate()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns the function that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    def publish(self, event: LiveEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception('live listener %r failed on %s', listener, event.topic)


hub = EventHub()
