"""Checking data against its declared type (a TypedDict, or a list of them): every declared key present with a
value of its type, strictly, and no key that the type does not declare."""
from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError


def assert_conforms(declared: Any, value: Any, where: str = '') -> None:
    """`value` as a client reads it (JSON) is exactly a `declared`: a TypedDict that drifts from what the code
    returns fails here, whether a key is missing, mistyped or undeclared."""
    plain = json.loads(json.dumps(value))
    adapter = TypeAdapter(declared)
    try:
        checked = adapter.validate_python(plain, strict=True)
    except ValidationError as exc:
        raise AssertionError(f'{where or declared}: {exc}') from None
    undeclared = _undeclared(adapter.dump_python(checked, mode='json'), plain, where or str(declared))
    assert not undeclared, f'not declared: {", ".join(undeclared)}'


def _undeclared(kept: Any, sent: Any, path: str) -> list[str]:
    """The keys of `sent` that validation dropped (the type does not declare them), by path."""
    if isinstance(sent, dict) and isinstance(kept, dict):
        found = [f'{path}.{key}' for key in sent if key not in kept]
        for key in kept.keys() & sent.keys():
            found += _undeclared(kept[key], sent[key], f'{path}.{key}')
        return found
    if isinstance(sent, list) and isinstance(kept, list):
        return [p for i, (k, s) in enumerate(zip(kept, sent, strict=True)) for p in _undeclared(k, s, f'{path}[{i}]')]
    return []
