"""Reports: summary, trend, comparison and projection as JSON, CSV or Markdown, from the same rows."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from app.api.deps import ReadConn, RuntimeDep
from app.api.errors import BadRequest
from app.api.routes.budget import FromQ, PeriodName, ToQ
from services.insights import report_formats, reports

router = APIRouter(prefix='/reports', tags=['reports'])
FormatQ = Annotated[Literal['json', 'csv', 'md'], Query(alias='format', description='json, csv or md')]
GroupByQ = Annotated[str | None, Query(description='summary and comparison: all (default), provider, model or '
                                                   'agent; trend: day (default) or week; projection: none')]


@router.get('')
def list_reports() -> dict[str, Any]:
    """The report kinds, the group_by each takes, and the formats."""
    return {'kinds': [{'kind': kind, 'group_by': list(reports.GROUP_BY[kind]),
                       'default_group_by': reports.DEFAULT_GROUP_BY.get(kind)} for kind in reports.KINDS],
            'formats': list(report_formats.FORMATS), 'default_period': reports.DEFAULT_PERIOD}


@router.get('/{kind}', response_model=None)
def get_report(kind: str, conn: ReadConn, rt: RuntimeDep, period: PeriodName | None = None, start: FromQ = None,
               end: ToQ = None, group_by: GroupByQ = None, fmt: FormatQ = 'json') -> dict[str, Any] | Response:
    """A report for a period (day, week, month; default month) or from/to (as the budget endpoints take them).

    summary: totals by provider, model and agent, by channel and the reconciled total (the budget summary's);
    trend: a zero-filled daily or weekly series; comparison: against the previous period of the same length;
    projection: the forecast for the current day, week and month."""
    if kind not in reports.KINDS:
        raise BadRequest(f'kind: unknown report {kind!r}: one of {", ".join(reports.KINDS)}', 404)
    s = rt.settings
    try:
        report = reports.build_report(conn, kind, s.zone, s.daily_limit_micros, period, start, end, group_by)
    except reports.ReportError as exc:
        raise BadRequest(str(exc)) from None
    if fmt == 'json':
        return report_formats.to_json(report)
    return Response(report_formats.render(report, fmt), media_type=report_formats.MEDIA_TYPES[fmt],
                    headers={'Content-Disposition':
                             f'attachment; filename="{report_formats.filename(report, fmt)}"'})
