"""In-process event hub: every write publishes a small event; pages and other listeners subscribe.

Publishing is cheap and thread-safe (the ledger publishes from worker threads); listeners run on the thread that
publishes, so a listener that touches the UI must hand over to the event loop itself.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveEvent:
    topic: str  # 'usage', 'prices', 'settings', 'sessions', ...
    data: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[LiveEvent], None]


class EventHub:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns the function that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    def publish(self, topic: str, **data: Any) -> None:
        event = LiveEvent(topic, data)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception('live listener %r failed on %s', listener, topic)


hub = EventHub()
