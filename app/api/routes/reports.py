"""Reports: summary, trend, comparison and projection as JSON, CSV or Markdown, from the same rows."""
from __future__ import annotations

from typing import Annotated, Literal

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Query, Response

from app.api.deps import READ, RuntimeDep
from app.api.routes.budget import FromQ, PeriodName, ToQ
from app.runtime import Runtime
from services.core.errors import NotFound
from services.insights import report_formats, reports
from services.insights.report_formats import ReportCatalog, ReportJson

router = APIRouter(prefix='/reports', tags=['reports'])
REPORT_THREADS = 4  # reports built at once; more wait their turn, off the event loop
_limiter: CapacityLimiter | None = None
FormatQ = Annotated[Literal['json', 'csv', 'md'], Query(alias='format', description='json, csv or md')]
GroupByQ = Annotated[str | None, Query(description='summary and comparison: all (default), provider, model or '
                                                   'agent; trend: day (default) or week; projection: none')]


@router.get('', dependencies=READ)
def list_reports() -> ReportCatalog:
    """The report kinds, the group_by each takes, and the formats."""
    return report_formats.catalog()


_FILE = {'schema': {'type': 'string'}}


@router.get('/{kind}', dependencies=READ, response_model=None, responses={200: {
    'model': ReportJson, 'description': 'The report as JSON, or as a CSV or Markdown file (`format`)',
    'content': {report_formats.MEDIA_TYPES['csv']: _FILE, report_formats.MEDIA_TYPES['md']: _FILE}}})
async def get_report(kind: str, rt: RuntimeDep, period: PeriodName | None = None, start: FromQ = None,
                     end: ToQ = None, group_by: GroupByQ = None, fmt: FormatQ = 'json') -> ReportJson | Response:
    """A report for a period (day, week, month; default month) or from/to (as the budget endpoints take them).

    summary: totals by provider, model and agent, by channel and the reconciled total (the budget summary's);
    trend: a zero-filled daily or weekly series; comparison: against the previous period of the same length;
    projection: the forecast for the current day, week and month. Ranges are at most ten years; a report is built
    in a worker thread (at most REPORT_THREADS at once), so budget checks answer while it runs."""
    if kind not in reports.KINDS:
        raise NotFound(f'kind: unknown report {kind!r}: one of {", ".join(reports.KINDS)}')
    global _limiter
    if _limiter is None:
        _limiter = CapacityLimiter(REPORT_THREADS)
    return await to_thread.run_sync(_report, rt, kind, period, start, end, group_by, fmt, limiter=_limiter)


def _report(rt: Runtime, kind: str, period: str | None, start: str | None, end: str | None, group_by: str | None,
            fmt: str) -> ReportJson | Response:
    with rt.engine.connect() as conn:
        report = reports.build_report(conn, rt.settings.budget, kind, period, start, end, group_by)
    if fmt == 'json':
        return report_formats.to_json(report)
    return report_file_response(report, fmt)


def report_file_response(report: reports.Report, fmt: str) -> Response:
    """A report as a file download (the API's CSV and Markdown, and the reports page's through
    app/pages/downloads.py)."""
    return Response(report_formats.render(report, fmt), media_type=report_formats.MEDIA_TYPES[fmt],
                    headers={'Content-Disposition': f'attachment; filename="{report_formats.filename(report, fmt)}"'})
