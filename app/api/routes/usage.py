"""Recording usage events and reading them back. Recording runs in ingest's own lane (app/api/ingest.py):
SPENDGAUGE_INGEST_WORKERS at a time, the rest waiting their turn up to a bound, beyond it 503 with Retry-After."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.api.deps import INGEST, READ, ReadConn, RuntimeDep
from app.api.errors import BadRequest
from app.api.ingest import lane, request_size
from services.core.periods import PeriodName
from services.usage.events import UsageEventIn
from services.usage.ledger import MAX_BATCH, BatchOut, Ledger, RecordedEvent, batch_out
from services.usage.queries import (
    EXPORT_COLUMNS,
    EXPORT_MEDIA,
    MAX_EXPORT,
    MAX_PAGE,
    UsagePage,
    UsageQuery,
    export_usage,
    list_usage,
    period_or_range,
)

router = APIRouter(prefix='/usage', tags=['usage'])

_BATCH_SCHEMA = {
    'required': True,
    'content': {'application/json': {'schema': {
        'type': 'object', 'required': ['events'],
        'properties': {'events': {'type': 'array', 'maxItems': MAX_BATCH,
                                  'items': UsageEventIn.model_json_schema()}}}}},
}


def _parse_batch(body: bytes) -> Any:
    """The batch as JSON. orjson refuses the whole body for one string with a lone surrogate (JSON allows `\\ud800`,
    Unicode does not): then the standard parser reads it, and that one event is rejected on its own."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest('the request body is not valid JSON', 400) from None


def json_response(data: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status_code, media_type='application/json')


# These routes answer with orjson for speed: `responses` documents the bodies, which FastAPI does not validate.
@router.post('', dependencies=INGEST, status_code=201,
             responses={201: {'model': RecordedEvent, 'description': 'Stored: the event with its cost'},
                        200: {'model': RecordedEvent, 'description': 'Already recorded: the stored event, counted '
                                                                     'once'}})
async def record_event(event: UsageEventIn, rt: RuntimeDep, request: Request) -> Response:
    """Record one LLM call. Returns the stored event with `cost_micros` and `cost_source`."""
    status, row = await lane().run(request_size(request), rt.ledger.record, event)
    return json_response({'status': status, **row}, 201 if status == 'stored' else 200)


@router.post('/batch', dependencies=INGEST, openapi_extra={'requestBody': _BATCH_SCHEMA},
             responses={200: {'model': BatchOut, 'description': 'A result for each event, in order'}})
async def record_batch(request: Request, rt: RuntimeDep) -> Response:
    """Record up to 10,000 events. Each gets a result: stored, duplicate, or rejected with its index and reason."""
    ingest = lane()
    ingest.admit(request_size(request))  # refused before its body is read
    body = await request.body()  # its size is capped before this runs (app/api/limits.py)
    answer = await ingest.run(len(body), _record_batch, rt.ledger, body)
    return Response(answer, media_type='application/json')


def _record_batch(ledger: Ledger, body: bytes) -> bytes:
    """Parse, record and encode the answer, all on the lane's thread: 10,000 results take milliseconds to build and
    encode, which checks on the event loop would otherwise wait for."""
    payload = _parse_batch(body)
    events = payload.get('events') if isinstance(payload, dict) else None
    if not isinstance(events, list):
        raise BadRequest('events: required, a list of usage events')
    if len(events) > MAX_BATCH:
        raise BadRequest(f'events: at most {MAX_BATCH} events per batch, got {len(events)}', 413)
    return orjson.dumps(batch_out(ledger.record_batch(events)))


def usage_filters(
    rt: RuntimeDep,
    start: Annotated[datetime | None, Query(alias='from', description='ISO time, inclusive')] = None,
    end: Annotated[datetime | None, Query(alias='to', description='ISO time, exclusive')] = None,
    agent_id: str | None = None, session_id: str | None = None, provider: str | None = None,
    model: str | None = None, task_id: str | None = None, user_id: str | None = None, project: str | None = None,
    channel: Annotated[str | None, Query(description='litellm or direct')] = None,
    tag: Annotated[str | None, Query(description='events carrying this tag')] = None,
    cost_source: Annotated[str | None, Query(description='priced, reported or unpriced')] = None,
    period: Annotated[PeriodName | None, Query(description='the day, week or month containing now (instead of '
                                                           'from/to)')] = None,
    sort: Annotated[Literal['time', 'cost'], Query(description='time: newest first; cost: dearest first')] = 'time',
) -> UsageQuery:
    """The filters the listing and the export share."""
    start, end = period_or_range(period, start, end, rt.settings.zone)
    return UsageQuery(start, end, agent_id, session_id, provider, model, task_id, user_id, project, channel,
                      tag=tag, cost_source=cost_source, sort=sort)


FiltersDep = Annotated[UsageQuery, Depends(usage_filters)]


@router.get('', dependencies=READ,
            responses={200: {'model': UsagePage, 'description': 'A page of events, newest first'}})
def get_usage(conn: ReadConn, filters: FiltersDep, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
              cursor: str | None = None) -> Response:
    """Recorded events, newest first; pass `next_cursor` back as `cursor` for the next page. `pruned_before`: events
    before it were pruned (retention) and are not listed, though every total still counts them."""
    return json_response(list_usage(conn, replace(filters, limit=limit, cursor=cursor)))


@router.get('/export', dependencies=READ, response_class=StreamingResponse, responses={200: {
    'description': f'The filtered events, newest first: CSV (columns {", ".join(EXPORT_COLUMNS)}) or JSON lines '
                   '(one event a line, as the listing gives it)',
    'content': {'text/csv': {'schema': {'type': 'string'}}, 'application/x-ndjson': {'schema': {'type': 'string'}}}}})
def export(rt: RuntimeDep, filters: FiltersDep,
           format: Annotated[str, Query(description='csv or jsonl')] = 'csv',
           limit: Annotated[int, Query(ge=1, le=MAX_EXPORT, description='at most this many events')] = 100_000,
           ) -> Response:
    """The events the listing's filters select, streamed page by page (at most `limit`, newest first)."""
    return usage_file_response(export_usage(lambda query: rt.read(list_usage, query), filters, format, limit),
                               format)


def usage_file_response(chunks: Iterator[str], kind: str) -> StreamingResponse:
    """An export as a download (the API's, and the usage explorer's through app/pages/downloads.py)."""
    return StreamingResponse(chunks, media_type=EXPORT_MEDIA[kind],
                             headers={'Content-Disposition': f'attachment; filename="usage.{kind}"'})
