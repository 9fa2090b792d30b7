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
from collections.abc import Mapping
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


def error_message(error: Mapping[str, Any]) -> str:
    """One of pydantic's errors as we show it: `Value error, ` dropped, and a NO_NUL pattern said in words."""
    if error.get('type') == 'string_pattern_mismatch' and (error.get('ctx') or {}).get('pattern') == NO_NUL:
        value = error.get('input')
        return (unstorable_text(value) if isinstance(value, str) else None) or 'cannot be stored'
    return str(error.get('msg', 'invalid')).removeprefix('Value error, ')


def unstorable_text(value: str) -> str | None:
    """Why a string cannot be stored, or None."""
    if '\x00' in value:
        return 'contains a NUL character (\\u0000), which cannot be stored'
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:
        return 'contains a lone surrogate (not valid Unicode), which cannot be stored'
    return None


def _surely_storable(encoded: bytes, max_depth: int) -> bool:
    """What orjson made of a value shows it storable: orjson refuses lone surrogates and integers beyond 64 bits
    itself; no escaped NUL; no `null` (orjson writes NaN and infinities as null, so those take the slow walk); and
    no more brackets than levels allowed (brackets inside strings only send a value to the slow walk)."""
    return (b'\\u0000' not in encoded and b'null' not in encoded
            and encoded.count(b'{') + encoded.count(b'[') <= max_depth)


def _encoded(value: Any) -> bytes | None:
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a surrogate, a huge integer, a type JSON does not have
        return None


def unstorable(value: Any, max_depth: int = MAX_NESTING) -> tuple[str, str] | None:
    """(where, why) for the first part of a JSON-like value that cannot be stored, or None. `where` is a dotted path
    ('' for the value itself). Ingest calls this for every event: orjson's C encoder answers for almost all of them,
    the walk below only runs on what it cannot vouch for, and names the place."""
    encoded = _encoded(value)
    if encoded is not None and _surely_storable(encoded, max_depth):
        return None
    return _walk(value, max_depth)


def _walk(value: Any, max_depth: int) -> tuple[str, str] | None:
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
    encoded = _encoded(value)
    if encoded is None or not _surely_storable(encoded, MAX_METADATA_DEPTH):
        problem = _walk(value, MAX_METADATA_DEPTH)
        if problem:
            where, reason = problem
            raise ValueError(f'{where or "metadata"} {reason}')
    if encoded is None:  # orjson's own limits, should the walk above have missed one
        raise ValueError('cannot be stored as JSON')
    size = len(encoded)
    if size > MAX_METADATA_BYTES:
        raise ValueError(f'is {size:,} bytes as JSON; at most {MAX_METADATA_BYTES:,} are kept')
    return value


def check_storable(data: Any) -> None:
    problem = unstorable(data)
    if problem:
        where, reason = problem
        raise ValueError(f'{where}: {reason}' if where else reason)


def check_event(data: Any) -> None:
    """A usage event, on the ingest path: only its metadata is free-form (every other field has a type whose
    constraints refuse what cannot be stored, and unknown keys are dropped), so only the metadata is checked: one
    encoding answers for almost every event, and the walk names the place in the others."""
    metadata = data.get('metadata') if isinstance(data, dict) else None
    if not isinstance(metadata, dict) or not metadata:
        return
    encoded = _encoded(metadata)
    if encoded is not None and len(encoded) <= MAX_METADATA_BYTES and _surely_storable(encoded, MAX_METADATA_DEPTH):
        return
    check_storable({'metadata': metadata})  # names the place as Input's walk over the whole body would
    try:
        check_metadata(metadata)
    except ValueError as exc:
        raise ValueError(f'metadata: {exc}') from None


class Input(BaseModel):
    """The base of every request body: refuses, before field validation, any value that cannot be stored."""

    @model_validator(mode='before')
    @classmethod
    def _storable(cls, data: Any) -> Any:
        check_storable(data)
        return data
