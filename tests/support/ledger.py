"""Recording spend straight through a ledger, for service tests."""
from __future__ import annotations

from typing import Any

from services.usage.ledger import Ledger


def spend(ledger: Ledger, usd: str, **fields: Any) -> None:
    """One gpt-4o call that cost `usd` (reported by the caller)."""
    ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'cost_usd': usd, **fields})
