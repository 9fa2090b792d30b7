"""Files the pages offer for download, served to the logged-in browser session (the API's routes ask for a bearer
token, which a page does not hold). The guard (app/security/guard.py) sends a browser that is not logged in to the
login page; the actor is asked again here, where the file is read."""
from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.responses import Response

from app import runtime
from app.api.routes.reports import report_file_response
from app.api.routes.usage import FiltersDep, usage_file_response
from app.security.session import session_actor
from services.core.errors import Invalid
from services.insights import report_formats, reports
from services.spend import sessions
from services.usage.queries import EXPORT_MEDIA, MAX_EXPORT, export_usage, list_usage


def _refused() -> Response | None:
    if session_actor() is None:
        return Response('log in to download', status_code=401, media_type='text/plain')
    return None


def install(app: FastAPI) -> None:
    """Register the download routes (app/server.py's build: on every build, as the API's routes are)."""
    app.add_api_route('/download/usage.{kind}', usage_file, methods=['GET'], include_in_schema=False)
    app.add_api_route('/download/sessions.csv', sessions_file, methods=['GET'], include_in_schema=False)
    app.add_api_route('/download/reports/{kind}', report_file, methods=['GET'], include_in_schema=False)


def usage_file(kind: str, filters: FiltersDep,
               limit: Annotated[int, Query(ge=1, le=MAX_EXPORT)] = 100_000) -> Response:
    """The usage explorer's filtered events, as GET /api/v1/usage/export streams them."""
    refused = _refused()
    if refused is not None:
        return refused
    if kind not in EXPORT_MEDIA:
        return Response(f'no such file: usage.{kind}', status_code=404, media_type='text/plain')
    rt = runtime.current()
    try:
        chunks = export_usage(lambda q: rt.read(list_usage, q), filters, kind, limit)
    except Invalid as exc:
        return Response(str(exc), status_code=400, media_type='text/plain')
    return usage_file_response(chunks, kind)


def sessions_file() -> Response:
    """The sessions page's CSV: the most recent 1,000 sessions, as GET /api/v1/sessions.csv gives them."""
    refused = _refused()
    if refused is not None:
        return refused
    return Response(runtime.current().read(sessions.sessions_csv), media_type='text/csv',
                    headers={'Content-Disposition': 'attachment; filename="sessions.csv"'})


def report_file(kind: str, period: str | None = None, start: Annotated[str | None, Query(alias='from')] = None,
                end: Annotated[str | None, Query(alias='to')] = None, group_by: str | None = None,
                fmt: Annotated[str, Query(alias='format')] = 'csv') -> Response:
    """The reports page's files: a report as CSV, Markdown or JSON, as GET /api/v1/reports/{kind} gives it."""
    refused = _refused()
    if refused is not None:
        return refused
    if kind not in reports.KINDS or fmt not in report_formats.MEDIA_TYPES:
        return Response(f'no such report: {kind} as {fmt}', status_code=404, media_type='text/plain')
    rt = runtime.current()
    try:
        report = rt.read(reports.build_report, rt.settings.budget, kind, period, start, end, group_by)
    except Invalid as exc:
        return Response(str(exc), status_code=400, media_type='text/plain')
    return report_file_response(report, fmt)
