"""Slows down password guessing: after MAX_FAILURES wrong passwords for a name within WINDOW_S, that name is
refused for LOCK_S (whatever the password), per process."""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

MAX_FAILURES = 5
WINDOW_S = 15 * 60.0
LOCK_S = 60.0
MAX_TRACKED = 10_000  # names tried; beyond this the oldest are forgotten (no memory growth from random names)


class LoginThrottle:
    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def locked_for(self, name: str) -> float:
        """Seconds until this name may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            failures = self._failures.get(name)
            if not failures:
                return 0.0
            while failures and now - failures[0] > WINDOW_S:
                failures.popleft()
            if len(failures) < MAX_FAILURES:
                return 0.0
            return max(0.0, failures[-1] + LOCK_S - now)

    def failed(self, name: str) -> None:
        with self._lock:
            if name not in self._failures and len(self._failures) >= MAX_TRACKED:
                self._failures.pop(next(iter(self._failures)))
            self._failures[name].append(time.monotonic())
            while len(self._failures[name]) > MAX_FAILURES:
                self._failures[name].popleft()

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)
