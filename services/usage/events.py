"""The shape of a usage event as callers send it, and its validation."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from services.core.inputs import NO_NUL, Input, Label, check_event, error_message
from services.core.money import Usd
from services.core.periods import checked_utc

Channel = Literal['litellm', 'direct']
Source = Literal['api', 'sdk', 'litellm_callback', 'litellm_pull', 'demo']
MAX_TOKENS = 10**12
TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS)]


class UsageEventIn(Input):
    """One LLM call. `input_tokens` includes cached tokens (cache reads and cache writes)."""

    model_config = ConfigDict(extra='ignore', str_strip_whitespace=True)

    event_id: Label | None = Field(default=None, description='Idempotency key; generated when missing')
    ts: datetime | None = Field(default=None, description='When the call happened; now when missing')
    provider: Annotated[str, StringConstraints(max_length=100, pattern=NO_NUL)] | None = Field(
        default=None, description='openai, anthropic, openrouter, ...; inferred from the model when missing')
    model: Label
    agent_id: Label | None = None
    session_id: Label | None = None
    user_id: Label | None = None
    project: Label | None = None
    task_id: Label | None = None
    tags: list[Label] = Field(default_factory=list, max_length=50)
    channel: Channel = 'direct'
    source: Source = 'api'
    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    cache_read_tokens: TokenCount = 0
    cache_write_tokens: TokenCount = 0
    cost_usd: Annotated[Usd, Field(le=1_000_000)] | None = Field(
        default=None, description='Cost reported by the caller; when given it is kept as is (cost_source=reported)')
    latency_ms: Annotated[int, Field(ge=0, le=86_400_000)] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict,
                                     description='free-form JSON, at most 16 KB and 8 levels deep')

    @model_validator(mode='after')
    def _cache_within_input(self) -> UsageEventIn:
        cached = self.cache_read_tokens + self.cache_write_tokens
        if cached > self.input_tokens:
            raise ValueError(f'cache_read_tokens + cache_write_tokens ({cached}) cannot exceed input_tokens '
                             f'({self.input_tokens}); input_tokens includes cached tokens')
        return self

    @model_validator(mode='before')
    @classmethod
    def _storable(cls, data: Any) -> Any:
        """Replaces Input's walk over the whole body: ingest checks only the free-form metadata."""
        check_event(data)
        return data

    @field_validator('ts')
    @classmethod
    def _ts_in_utc(cls, ts: datetime | None) -> datetime | None:
        return None if ts is None else checked_utc(ts, 'ts')

    @property
    def ts_utc(self) -> datetime:
        return self.ts or datetime.now(UTC)


def describe_errors(error: ValidationError) -> str:
    """'input_tokens: Input should be greater than or equal to 0; model: Field required'."""
    parts = []
    for item in error.errors(include_url=False):
        where = '.'.join(str(p) for p in item['loc'])
        message = error_message(item)
        parts.append(f'{where}: {message}' if where else message)
    return '; '.join(parts)
