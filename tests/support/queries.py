"""Count the SQL statements an engine runs inside a `with` block."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event


@contextmanager
def counting_queries(engine: Engine, selects_only: bool = False) -> Iterator[list[str]]:
    """The statements run on `engine` while the block runs (only the SELECTs with `selects_only`)."""
    statements: list[str] = []

    def count(_conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if not selects_only or statement.lstrip().upper().startswith('SELECT'):
            statements.append(statement)
    event.listen(engine, 'before_cursor_execute', count)
    try:
        yield statements
    finally:
        event.remove(engine, 'before_cursor_execute', count)
