"""The daily digest: a preview of any day's (JSON, text or the e-mail's HTML), and sending it now."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import READ, Admin, RuntimeDep
from app.runtime import Runtime
from services.alerting.notify import DeliveryList, DeliveryOut, get_deliveries
from services.core.inputs import Input
from services.insights.digest import DigestOut, parse_day
from services.insights.digest_render import digest_html, digest_text

router = APIRouter(prefix='/digest', tags=['digest'])
DAY_HELP = 'the local day YYYY-MM-DD (SPENDGAUGE_TZ), from 2000-01-01 up to today; default yesterday'
DayQ = Annotated[str | None, Query(max_length=10, description=DAY_HELP)]
FormatQ = Annotated[Literal['json', 'text', 'html'], Query(alias='format', description='json, text or html')]
MEDIA_TYPES = {'text': 'text/plain; charset=utf-8', 'html': 'text/html; charset=utf-8'}
# The preview's HTML is the e-mail's: inline styles, nothing to fetch, no script; the browser is told so too.
HTML_HEADERS = {'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'",
                'X-Content-Type-Options': 'nosniff'}
SEND_WAIT_S = 10.0  # POST /send answers once each delivery had its first attempt, or after this long
_POLL_S = 0.1
_TEXT = {'schema': {'type': 'string'}}


class DigestSendIn(Input):
    model_config = ConfigDict(extra='forbid')

    day: str | None = Field(None, max_length=10, description=DAY_HELP)


@router.get('', dependencies=READ, response_model=None, responses={200: {
    'model': DigestOut, 'description': 'The digest as JSON, or as the text or HTML the e-mail carries (`format`)',
    'content': {MEDIA_TYPES['text']: _TEXT, MEDIA_TYPES['html']: _TEXT}}})
def preview_digest(rt: RuntimeDep, day: DayQ = None, fmt: FormatQ = 'json') -> DigestOut | Response:
    """The daily digest of a local day (default yesterday), as it would be sent now: the day's reconciled spend
    against the day limit, the top 3 agents and models, the alerts and anomalies opened that day, today's forecast
    and the largest saving the optimiser finds in the day's calls (cost only)."""
    digest = rt.commands.digest.build(parse_day(day, datetime.now(UTC), rt.settings.zone))
    if fmt == 'json':
        return digest
    if fmt == 'text':
        return Response(digest_text(digest), media_type=MEDIA_TYPES['text'])
    return Response(digest_html(digest), media_type=MEDIA_TYPES['html'], headers=HTML_HEADERS)


@router.post('/send')
async def send_digest(body: DigestSendIn, rt: RuntimeDep, actor: Admin) -> DeliveryList:
    """Send the digest of a day (default yesterday) now, even if it was sent before: one delivery per channel (the
    log, SPENDGAUGE_ALERT_WEBHOOK_URL as JSON or Slack blocks, e-mail to SPENDGAUGE_SMTP_TO), retried with backoff
    when they fail. Answers with the deliveries once each had its first attempt (or after SEND_WAIT_S seconds)."""
    day = parse_day(body.day, datetime.now(UTC), rt.settings.zone)
    queued = await run_in_threadpool(rt.commands.digest.send_now, actor, day)
    items = await _after_first_attempts(rt, [r['id'] for r in queued])
    return {'items': items, 'count': len(items)}


async def _after_first_attempts(rt: Runtime, ids: list[int]) -> list[DeliveryOut]:
    deadline = asyncio.get_running_loop().time() + SEND_WAIT_S
    while True:
        rows = await run_in_threadpool(rt.read, get_deliveries, ids)
        if all(r['attempts'] or r['status'] != 'pending' for r in rows) \
                or asyncio.get_running_loop().time() >= deadline:
            return rows
        await asyncio.sleep(_POLL_S)

