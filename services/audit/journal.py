"""The JSONL audit log (SPENDGAUGE_AUDIT_LOG): one JSON object a line, appended to a file per UTC day.

Callers only put a reference on a bounded queue (a state change after its commit, a batch of raw usage events as
the ledger received them); one writer thread serialises, scrubs and appends them, so neither the event loop nor
ingest waits on the disk. A line that cannot be written (an unwritable path, a full disk) is counted and logged,
never raised to the caller; nor is a line dropped because the queue is full.

Lines: `{"kind": "change", "at", "actor", "action", "target", "before", "after", "id"}` and
`{"kind": "event", "at", "event": <the payload as received>}`.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import BaseModel

from services.core.scrub import might_hold_secrets, quick_scrub

log = logging.getLogger(__name__)

MAX_WAITING = 10_000  # queued items (a change, or one ingest batch of up to 10,000 events) before items are dropped
SLICE = 100  # raw events serialised between two chances for other threads to run
_STOP = object()
Clock = Callable[[], datetime]


def file_for(where: Path, day: date) -> Path:
    """The day's file: `audit-YYYY-MM-DD.jsonl` in a directory, or `<stem>-YYYY-MM-DD<suffix>` beside a file
    path (one ending in `.jsonl` or `.log`)."""
    if where.suffix in ('.jsonl', '.log'):
        return where.with_name(f'{where.stem}-{day.isoformat()}{where.suffix}')
    return where / f'audit-{day.isoformat()}.jsonl'


class Journal:
    def __init__(self, where: str | Path, secrets: Sequence[str] = (), clock: Clock = lambda: datetime.now(UTC),
                 max_waiting: int = MAX_WAITING) -> None:
        self.where = Path(where)
        self.secrets = tuple(secrets)
        self.clock = clock
        self.failed = 0  # lines that could not be written
        self.dropped = 0  # items refused because the queue was full
        self.written = 0
        self._queue: queue.Queue[Any] = queue.Queue(max_waiting)
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._thread = threading.Thread(target=self._run, name='audit-journal', daemon=True)
        self._thread.start()

    # --- callers (any thread) -----------------------------------------------------------------------------------

    def change(self, row: dict[str, Any]) -> None:
        """A state change, as its audit row was committed."""
        self._put(('change', row))

    def events(self, payloads: Sequence[Any]) -> None:
        """Raw usage events as received (dicts or validated models), before anything checks them."""
        self._put(('events', self.clock(), payloads))

    def flush(self, timeout: float = 10) -> None:
        """Until every item queued so far is written (tests, shutdown)."""
        done = threading.Event()
        self._put(('flush', done), block=True)
        done.wait(timeout)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(10)

    def _put(self, item: Any, block: bool = False) -> None:
        try:
            self._queue.put(item, block=block)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning('audit log: %d items dropped, the writer is behind (disk too slow?)', self.dropped)

    # --- the writer thread --------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if item[0] == 'flush':
                self._sync()
                item[1].set()
                continue
            lines = self._lines(item)
            self._write(lines)
            if self._queue.empty():
                self._sync()
        self._sync()
        if self._file is not None:
            self._file.close()

    def _lines(self, item: tuple[Any, ...]) -> list[bytes]:
        if item[0] == 'change':
            return [quick_scrub(_dumps({'kind': 'change', **item[1]}).decode(), self.secrets).encode() + b'\n']
        head = b'{"kind":"event","at":"' + item[1].isoformat().encode() + b'","event":'
        payloads, lines = item[2], []
        for start in range(0, len(payloads), SLICE):
            events = [_dumps(payload) for payload in payloads[start:start + SLICE]]
            if might_hold_secrets(b'\n'.join(events).decode(), self.secrets):  # one check a slice: mostly clean
                events = [quick_scrub(e.decode(), self.secrets).encode() for e in events]
            lines += [head + e + b'}\n' for e in events]
            time.sleep(0)  # let ingest have the GIL back now, not after the interpreter's 5 ms switch interval
        return lines

    def _write(self, lines: list[bytes]) -> None:
        try:
            file = self._open(self.clock().date())
            file.write(b''.join(lines))
            self.written += len(lines)
        except (OSError, ValueError) as exc:
            self.failed += len(lines)
            self._close_file()
            if self.failed == len(lines) or self.failed % 1000 < len(lines):
                log.warning('audit log: %d lines not written to %s: %s', self.failed, self.where, exc)

    def _open(self, day: date) -> IO[bytes]:
        path = file_for(self.where, day)
        if self._file is None or path != self._path:  # the first line, or a new UTC day: the next file
            self._close_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open('ab')
            self._path = path
        return self._file

    def _sync(self) -> None:
        if self._file is None:
            return
        try:
            self._file.flush()
        except OSError as exc:
            log.warning('audit log: cannot flush %s: %s', self._path, exc)
            self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file, self._path = None, None


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_jsonable, option=orjson.OPT_NON_STR_KEYS)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode='json', exclude_unset=True)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
