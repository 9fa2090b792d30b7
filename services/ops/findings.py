"""What one check of `spendgauge doctor` found: a status, what was seen, and the fix to apply when it is not OK."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from typing_extensions import TypedDict

Status = Literal['ok', 'warn', 'fail', 'skip']  # skip: not configured, nothing to check


class FindingOut(TypedDict):
    check: str
    status: Status
    detail: str
    fix: str  # '' when there is nothing to do


@dataclass(frozen=True)
class Finding:
    check: str  # 'database', 'source openai_direct', 'smtp', ...
    status: Status
    detail: str
    fix: str = ''

    def as_dict(self) -> FindingOut:
        return {'check': self.check, 'status': self.status, 'detail': self.detail, 'fix': self.fix}


def ok(check: str, detail: str) -> Finding:
    return Finding(check, 'ok', detail)


def warn(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, 'warn', detail, fix)


def fail(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, 'fail', detail, fix)


def skip(check: str, detail: str) -> Finding:
    return Finding(check, 'skip', detail)


def exit_code(findings: Iterable[Finding], strict: bool = False) -> int:
    """0 when nothing failed (warnings are reported, not fatal), 1 when a check failed; `strict`: a warning too."""
    bad = ('fail', 'warn') if strict else ('fail',)
    return 1 if any(f.status in bad for f in findings) else 0
