"""The usage explorer's reads: the tag and cost-source filters, and the filtered set exported page by page (CSV with
the shared writer's neutralised cells, or JSON lines). Against SQLite and, when SPENDGAUGE_TEST_DATABASE_URL is set,
PostgreSQL."""
from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import Engine

from services.core.errors import Invalid
from services.usage.ledger import Ledger
from services.usage.queries import EXPORT_COLUMNS, UsagePage, UsageQuery, export_usage, list_usage

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _record(ledger: Ledger) -> None:
    """12 events a minute apart: tags eval / prod / both / none in turn; every third reported by its caller, one
    model unknown to the prices; the newest from an agent named like a spreadsheet formula."""
    events = []
    for n in range(12):
        tags = (['eval'], ['prod'], ['eval', 'prod'], [])[n % 4]
        events.append({'event_id': f'e-{n}', 'ts': (T0 + timedelta(minutes=n)).isoformat(), 'tags': tags,
                       'model': 'no-such-model' if n == 5 else 'gpt-4o', 'provider': 'openai',
                       'input_tokens': 100, 'output_tokens': 10, 'agent_id': '=HYPERLINK(1)' if n == 11 else 'a1',
                       **({'cost_usd': '0.5'} if n % 3 == 0 else {})})
    assert all(r.status == 'stored' for r in ledger.record_batch(events))


def _numbers(page: UsagePage) -> list[int]:
    return [int(item['event_id'][2:]) for item in page['items']]


@pytest.mark.parametrize(('filters', 'expected'), [
    ({'tag': 'eval'}, [10, 8, 6, 4, 2, 0]),
    ({'tag': 'prod'}, [10, 9, 6, 5, 2, 1]),
    ({'tag': 'nope'}, []),
    ({'tag': 'eval', 'cost_source': 'reported'}, [6, 0]),
    ({'cost_source': 'unpriced'}, [5]),
    ({'cost_source': 'priced'}, [11, 10, 8, 7, 4, 2, 1]),
], ids=str)
def test_tag_and_cost_source_filters(ledger: Ledger, filters: dict[str, str], expected: list[int]) -> None:
    _record(ledger)
    with ledger.engine.connect() as conn:
        assert _numbers(list_usage(conn, UsageQuery(**filters))) == expected  # type: ignore[arg-type]
        if len(expected) > 2:  # and across pages
            first = list_usage(conn, UsageQuery(limit=2, **filters))  # type: ignore[arg-type]
            rest = list_usage(conn, UsageQuery(cursor=first['next_cursor'], **filters))  # type: ignore[arg-type]
            assert _numbers(first) + _numbers(rest) == expected


@pytest.mark.parametrize('filters', [{'cost_source': 'free'}, {'channel': 'pigeon'}], ids=str)
def test_an_unknown_cost_source_or_channel_is_refused(ledger: Ledger, filters: dict[str, str]) -> None:
    with ledger.engine.connect() as conn, pytest.raises(Invalid):
        list_usage(conn, UsageQuery(**filters))  # type: ignore[arg-type]


def _reader(engine: Engine, pages: list[int]) -> Callable[[UsageQuery], UsagePage]:
    def read_page(query: UsageQuery) -> UsagePage:
        with engine.connect() as conn:
            page = list_usage(conn, query)
        pages.append(page['count'])
        return page
    return read_page


def test_the_export_streams_page_by_page_as_csv(ledger: Ledger) -> None:
    _record(ledger)
    pages: list[int] = []
    chunks = list(export_usage(_reader(ledger.engine, pages), UsageQuery(tag='eval'), 'csv', page=4))
    rows = list(csv.reader(io.StringIO(''.join(chunks))))
    assert rows[0] == list(EXPORT_COLUMNS)
    assert [r[1] for r in rows[1:]] == [f'e-{n}' for n in (10, 8, 6, 4, 2, 0)]
    assert pages == [4, 2]  # two reads of the database, a page each
    by_name = [dict(zip(EXPORT_COLUMNS, r, strict=True)) for r in rows[1:]]
    assert by_name[-1]['cost_usd'] == '0.500000' and by_name[-1]['cost_source'] == 'reported'
    assert by_name[0]['tags'] == 'eval prod' and by_name[0]['input_tokens'] == '100'


def test_the_export_neutralises_formulas_and_stops_at_its_limit(ledger: Ledger) -> None:
    _record(ledger)
    pages: list[int] = []
    text = ''.join(export_usage(_reader(ledger.engine, pages), UsageQuery(), 'csv', most=5, page=2))
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 1 + 5 and pages == [2, 2, 1]
    assert rows[1][EXPORT_COLUMNS.index('agent_id')] == "'=HYPERLINK(1)"


def test_the_export_as_json_lines_is_what_the_listing_gives(ledger: Ledger) -> None:
    _record(ledger)
    lines = ''.join(export_usage(_reader(ledger.engine, []), UsageQuery(cost_source='reported'), 'jsonl',
                                 page=3)).splitlines()
    with ledger.engine.connect() as conn:
        listed = list_usage(conn, UsageQuery(cost_source='reported'))['items']
    assert [orjson.loads(line) for line in lines] == listed and len(listed) == 4


@pytest.mark.parametrize(('kind', 'most'), [('xlsx', 10), ('csv', 0), ('csv', 10**7)])
def test_a_bad_export_is_refused_before_anything_is_read(ledger: Ledger, kind: str, most: int) -> None:
    pages: list[int] = []
    with pytest.raises(Invalid):
        export_usage(_reader(ledger.engine, pages), UsageQuery(), kind, most=most)
    assert pages == []


def test_a_rare_value_is_searched_for_a_bounded_span_at_a_time(ledger: Ledger,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter no index serves looks through SEARCH_SPAN events a page: a short page says how far it looked and
    its cursor goes on from there, so following the cursors finds every match, in order, each once."""
    from services.usage import queries

    events = [{'event_id': f'r-{n}', 'ts': (T0 + timedelta(minutes=n)).isoformat(), 'model': 'gpt-4o',
               'provider': 'openai', 'input_tokens': 10, 'tags': ['rare'] if n in (1, 2, 17) else []}
              for n in range(30)]
    assert all(r.status == 'stored' for r in ledger.record_batch(events))
    monkeypatch.setattr(queries, 'SEARCH_SPAN', 10)
    pages = []
    cursor = None
    with ledger.engine.connect() as conn:
        for _ in range(10):
            page = list_usage(conn, UsageQuery(tag='rare', limit=5, cursor=cursor))
            pages.append((_numbers_r(page), page['searched_to'] is not None))
            cursor = page['next_cursor']
            if cursor is None:
                break
    assert pages == [([], True), ([17], True), ([2, 1], False)]  # 29-20, 19-10, then the last ten: all there is
    assert [number for found, _ in pages for number in found] == [17, 2, 1]
    text = ''.join(export_usage(_reader(ledger.engine, []), UsageQuery(tag='rare'), 'jsonl', page=5))
    assert [orjson.loads(line)['event_id'] for line in text.splitlines()] == ['r-17', 'r-2', 'r-1']


def _numbers_r(page: UsagePage) -> list[int]:
    return [int(item['event_id'][2:]) for item in page['items']]
