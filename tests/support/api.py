"""Helpers shared by the test_api_* modules (end-to-end tests of the REST API against a real server process).

No tests here. Every test uses its own agent, session and task ids, and a day of its own in the past when it needs
a time window nobody else writes to, so tests can share the session-scoped `server`.
"""
from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

MICROS = 1_000_000


def uid(prefix: str) -> str:
    return f'{prefix}-{uuid.uuid4().hex[:12]}'


def usd(micros: int) -> str:
    """What the API must show for an amount: a decimal string with six places, computed independently here."""
    return f'{Decimal(micros) / MICROS:.6f}'


def assert_money(obj: Mapping[str, Any], name: str, micros: int | None = None) -> int:
    """`<name>_micros` is an int and `<name>_usd` is the same amount as a 6-place decimal string."""
    value = obj[f'{name}_micros']
    assert isinstance(value, int), obj
    assert obj[f'{name}_usd'] == usd(value), obj
    if micros is not None:
        assert value == micros, obj
    return value


def own_day() -> date:
    """A random past day (2001-2019) for tests that need a time window no other test writes to."""
    return date(2001, 1, 1) + timedelta(days=random.randrange(6900))


def at(day: date, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=UTC)


def iso(ts: datetime) -> str:
    return ts.isoformat()


def event(model: str = 'gpt-4o', **fields: Any) -> dict[str, Any]:
    """A usage event body: unique event_id, the given fields (datetimes become ISO strings)."""
    body: dict[str, Any] = {'event_id': uid('ev'), 'model': model}
    for key, value in fields.items():
        body[key] = value.isoformat() if isinstance(value, datetime) else value
    return body


def record(client: httpx.Client, model: str = 'gpt-4o', **fields: Any) -> dict[str, Any]:
    """POST /usage; the event must be stored (201)."""
    response = client.post('/usage', json=event(model, **fields))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body['status'] == 'stored', body
    return body


def record_batch(client: httpx.Client, events: list[Any]) -> dict[str, Any]:  # items need not be events
    response = client.post('/usage/batch', json={'events': events})
    assert response.status_code == 200, response.text
    return response.json()


def check(client: httpx.Client, **body: Any) -> dict[str, Any]:
    """POST /check: the decision for a call described by `body`."""
    response = client.post('/check', json=body)
    assert response.status_code == 200, response.text
    return response.json()


def summary(client: httpx.Client, period: str = 'day') -> dict[str, Any]:
    response = client.get('/budget/summary', params={'period': period})
    assert response.status_code == 200, response.text
    return response.json()


def same_period(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Before/after deltas only make sense within one budget period; midnight in between is not a failure."""
    if before['start'] != after['start']:
        pytest.skip('the budget period rolled over during the test')


def usage(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every event matching the filters (all pages)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, 'limit': 1000, **({'cursor': cursor} if cursor else {})}
        response = client.get('/usage', params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page['items']
        cursor = page['next_cursor']
        if not cursor:
            return items


def assert_client_error(response: httpx.Response, status: int | tuple[int, ...] = 422,
                        mentions: str | None = None) -> str:
    """A 4xx with a JSON `detail` string (naming the field when `mentions` is given); returns the detail."""
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, f'{response.status_code}: {response.text}'
    assert response.headers['content-type'].startswith('application/json'), response.headers
    detail = response.json()['detail']
    assert isinstance(detail, str), response.text
    assert detail
    if mentions is not None:
        assert mentions in detail, detail
    return detail
