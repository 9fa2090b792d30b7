"""What every input must be before it reaches a database: text PostgreSQL and SQLite can store, bounded nesting,
integers that fit in 64 bits.

PostgreSQL refuses NUL characters in text and jsonb, and no driver can encode a lone surrogate (JSON allows
`"\\ud800"`, Unicode does not); integers beyond 64 bits do not fit our JSON encoder. Each would otherwise surface as a
500 deep in an insert. Every request body model derives from `Input`, whose check walks the raw input once, before
the fields are validated, and names the first place that cannot be stored; query strings and paths are checked by
the request-limits middleware (app/api/limits.py) with `unstorable_text`.
"""
from __future__ import annotations

import math
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, StringConstraints, model_validator

NO_NUL = r'^[^\x00]*$'  # as a pattern it also refuses lone surrogates (pydantic cannot match them)
MAX_NESTING = 32  # any body: objects and lists within each other
MAX_METADATA_DEPTH = 8  # a usage event's metadata
MAX_METADATA_BYTES = 16 * 1024  # a usage event's metadata, serialised as JSON
MIN_INT, MAX_INT = -(2**63), 2**64 - 1  # what JSON columns can hold through our encoder

Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)]
"""An id or a name: agent, session, task, user, project, tag, model, provider, policy name, ..."""


def unstorable_text(value: str) -> str | None:
    """Why a string cannot be stored, or None."""
    if '\x00' in value:
        return 'contains a NUL character (\\u0000), which cannot be stored'
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:
        return 'contains a lone surrogate (not valid Unicode), which cannot be stored'
    return None


def unstorable(value: Any, max_depth: int = MAX_NESTING) -> tuple[str, str] | None:
    """(where, why) for the first part of a JSON-like value that cannot be stored, or None. `where` is a dotted path
    ('' for the value itself)."""
    stack: list[tuple[Any, str, int]] = [(value, '', 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            reason = unstorable_text(item)
        elif isinstance(item, bool) or item is None:
            reason = None
        elif isinstance(item, int):
            reason = None if MIN_INT <= item <= MAX_INT else 'is an integer beyond 64 bits, which cannot be stored'
        elif isinstance(item, float):
            reason = None if math.isfinite(item) else 'is not a finite number'
        elif isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                return where, f'is nested deeper than {max_depth} levels'
            reason = None
            if isinstance(item, dict):
                for key, child in item.items():
                    name = f'{where}.{key}' if where else str(key)
                    if isinstance(key, str) and (problem := unstorable_text(key)):
                        return where or '(key)', f'a key {problem}'
                    stack.append((child, name, depth + 1))
            else:
                stack.extend((child, f'{where}.{i}' if where else str(i), depth + 1) for i, child in enumerate(item))
        else:
            reason = None  # other Python values (models, dates) come from our own code, not from JSON
        if reason:
            return where, reason
    return None


def check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """A usage event's metadata: storable, at most MAX_METADATA_DEPTH deep and MAX_METADATA_BYTES as JSON."""
    problem = unstorable(value, MAX_METADATA_DEPTH)
    if problem:
        where, reason = problem
        raise ValueError(f'{where or "metadata"} {reason}')
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:  # orjson's own limits, should the walk above have missed one
        raise ValueError(f'cannot be stored as JSON: {exc}') from None
    if size > MAX_METADATA_BYTES:
        raise ValueError(f'is {size:,} bytes as JSON; at most {MAX_METADATA_BYTES:,} are kept')
    return value


class Input(BaseModel):
    """The base of every request body: refuses, before field validation, any value that cannot be stored."""

    @model_validator(mode='before')
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problem = unstorable(data)
        if problem:
            where, reason = problem
            raise ValueError(f'{where}: {reason}' if where else reason)
        return data
