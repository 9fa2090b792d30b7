"""What a report is, independent of how it is made: its columns and rows, the kinds and their groupings.

Kept apart from services/insights/reports.py (which reads the database) so that the CLI can validate arguments and
draw a server's report as a table without importing the database layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.core.errors import Invalid

KINDS = ('summary', 'trend', 'comparison', 'projection', 'efficiency', 'chargeback')
GROUP_BY = {'summary': ('all', 'provider', 'model', 'agent'), 'comparison': ('all', 'provider', 'model', 'agent'),
            'trend': ('day', 'week'), 'projection': (), 'efficiency': ('agent', 'model'),
            'chargeback': ('project', 'agent', 'user', 'tag', 'provider', 'model')}  # or allocation:<id>
DEFAULT_GROUP_BY = {'summary': 'all', 'comparison': 'all', 'trend': 'day', 'efficiency': 'agent',
                    'chargeback': 'project'}
ALLOCATION_GROUP = 'allocation:'  # the chargeback by the shares of an allocation: `allocation:3`
DEFAULT_PERIOD = 'month'


class ReportError(Invalid):
    """Parameters a report cannot be made from; the message names the parameter."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = 'text'  # text, int, usd (integer micro-USD), percent (Decimal), ratio (float)
    null_text: str = ''  # how text formats show None: '(none)' for a missing agent, 'new' for a percent from 0


@dataclass
class Report:
    kind: str
    title: str
    parameters: dict[str, Any]
    columns: list[Column]
    rows: list[dict[str, Any]]
    totals: dict[str, int] = field(default_factory=dict)  # money only, micro-USD

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def filename_stem(self) -> str:
        return filename_stem(self.kind, self.parameters)


def filename_stem(kind: str, parameters: dict[str, Any]) -> str:
    """`spendgauge-summary-2026-03-01-2026-03-31`: the kind and the local days it covers."""
    first, last = parameters.get('first_day'), parameters.get('last_day')
    return f'spendgauge-{kind}' + (f'-{first}-{last}' if first and last else '')


def group_by_for(kind: str, group_by: str | None) -> str | None:
    """The grouping a kind uses: the given one if the kind allows it, else its default (None for projection)."""
    if kind not in KINDS:
        raise ReportError(f'kind: unknown report {kind!r}: one of {", ".join(KINDS)}')
    allowed = GROUP_BY[kind]
    if group_by in (None, ''):
        return DEFAULT_GROUP_BY.get(kind)
    if not allowed:
        raise ReportError(f'group_by: the {kind} report takes no group_by')
    if kind == 'chargeback' and group_by.startswith(ALLOCATION_GROUP):
        number = group_by.removeprefix(ALLOCATION_GROUP)
        if not number.isascii() or not number.isdigit() or not 0 < int(number) < 2**63:
            raise ReportError(f'group_by: allocation:<id> takes an allocation id, got {group_by!r}')
        return group_by
    if group_by not in allowed:
        extra = f' or {ALLOCATION_GROUP}<id>' if kind == 'chargeback' else ''
        raise ReportError(f'group_by: must be one of {", ".join(allowed)}{extra} for the {kind} report, '
                          f'got {group_by!r}')
    return group_by
