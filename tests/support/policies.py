"""Policies on every scope and period a recount counts from the rollups (tests/services/budget/test_recount.py and
bench/recount.py use the same set)."""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection

from services.budget import policies


def every_kind_of_policy(today: date) -> list[dict[str, Any]]:
    """Per user, a project for a week, per tag for a month, per session, two custom ranges (one on a tag, 40 days
    back), and session periods on users, tags and a provider."""
    return [{'scope': 'user'}, {'scope': 'project', 'scope_value': 'alpha', 'period': 'week'},
            {'scope': 'tag', 'period': 'month'}, {'scope': 'session'},
            {'period': 'custom', 'period_start': str(today - timedelta(days=3)),
             'period_end': str(today + timedelta(days=3))},
            {'scope': 'tag', 'scope_value': 'eval', 'period': 'custom',
             'period_start': str(today - timedelta(days=40)), 'period_end': str(today)},
            {'scope': 'user', 'period': 'session'}, {'scope': 'tag', 'period': 'session'},
            {'scope': 'provider', 'scope_value': 'openai', 'period': 'session'}]


def create_every_kind_of_policy(conn: Connection, today: date) -> int:
    """Each of `every_kind_of_policy`, limited to $1,000; how many."""
    every = every_kind_of_policy(today)
    for fields in every:
        policies.create_policy(conn, policies.validate({'name': str(fields), 'limit_usd': '1000', **fields}))
    return len(every)
