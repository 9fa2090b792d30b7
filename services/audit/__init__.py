"""The audit trail: every state change a command makes, as a row of `audit_log` written in the command's own
transaction (trail.py) and read back by GET /api/v1/audit (queries.py); and, when SPENDGAUGE_AUDIT_LOG is set, the
same changes plus every raw usage event as received, appended to a daily JSONL file off the caller's thread
(journal.py)."""
