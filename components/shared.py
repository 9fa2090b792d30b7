"""Presentation worked out once for every open tab: the feed hands each tab the same snapshot, whose parts stay the
very same objects until a reload changes them (services/dashboard.py). So a function of those parts gives every
tab the same answer, and with 20 tabs open the first tab to update works it out for the other 19."""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

P = ParamSpec('P')
R = TypeVar('R')
KEPT = 8  # results kept per function: a few snapshots, each in light and dark


def per_snapshot(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, answering again what it answered for the very same arguments (compared by identity, and held so that
    their ids stay theirs) among the last KEPT calls. The result is shared: its users must not change it."""
    kept: dict[tuple[int, ...], tuple[tuple[Any, ...], R]] = {}

    @wraps(fn)
    def shared(*args: P.args, **kwargs: P.kwargs) -> R:
        key = (*map(id, args), *map(id, kwargs.values()), *map(hash, kwargs))
        hit = kept.get(key)
        if hit is not None:
            return hit[1]
        result = fn(*args, **kwargs)
        if len(kept) >= KEPT:
            del kept[next(iter(kept))]
        kept[key] = ((*args, *kwargs.values()), result)
        return result

    return shared
