"""One OTLP trace export recorded: its spans read (otlp), the LLM calls among them mapped (genai) and recorded
through the ledger in one batch, as POST /api/v1/usage/batch records them: priced, and each call once (its event id
is the trace and span id, so an export sent again records nothing twice).

The answer is OTLP's: the spans refused (`rejected`, with the first reasons) for `partialSuccess`; the others are
accepted, whether recorded (`stored`), recorded before (`duplicate`) or not LLM calls (`ignored`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from services.otel.genai import Lineage, usage_event
from services.otel.otlp import Export, decode
from services.usage.ledger import Ledger

MAX_REASONS = 5  # in the error message; the count covers them all


@dataclass
class Outcome:
    stored: int = 0
    duplicate: int = 0
    ignored: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, where: str, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f'{where}: {reason}' if where else reason)

    @property
    def error_message(self) -> str:
        if not self.rejected:
            return ''
        more = self.rejected - len(self.reasons)
        tail = f'; and {more} more' if more > 0 else ''
        spans = 'span' if self.rejected == 1 else 'spans'
        return f'{self.rejected} {spans} rejected: ' + '; '.join(self.reasons) + tail

    @property
    def summary(self) -> str:
        return f'stored={self.stored}; duplicate={self.duplicate}; ignored={self.ignored}; rejected={self.rejected}'


def record_export(ledger: Ledger, body: bytes, media_type: str, encoding: str | None) -> Outcome:
    """Decode and record one export. Raises the otlp module's errors for a body that cannot be read at all."""
    return record_spans(ledger, decode(body, media_type, encoding))


def record_spans(ledger: Ledger, export: Export) -> Outcome:
    outcome = Outcome()
    lineage = Lineage(export.spans)
    events = []
    for span in export.spans:
        mapped = usage_event(span, lineage)
        if mapped.problem is not None:
            outcome.reject(span.key if span.trace_id else '', mapped.problem)
        elif mapped.event is None:
            outcome.ignored += 1
        else:
            events.append(mapped.event)
    for result in ledger.record_batch(events) if events else ():
        if result.status == 'rejected':
            outcome.reject(result.event_id or '', result.reason or 'refused')
        elif result.status == 'duplicate':
            outcome.duplicate += 1
        else:
            outcome.stored += 1
    return outcome
