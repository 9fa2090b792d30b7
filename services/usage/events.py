"""The shape of a usage event as callers send it, and its validation."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from services.core.inputs import NO_NUL, Input, Label, check_event, error_message
from services.core.money import Usd
from services.core.periods import checked_utc
from services.usage.units import CallUnits, Images, Kind, seconds

Channel = Literal['litellm', 'direct']
Source = Literal['api', 'sdk', 'litellm_callback', 'litellm_pull', 'demo', 'otel']
MAX_TOKENS = 10**12
TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
MAX_AUDIO_SECONDS = 1_000_000  # 11.5 days of audio in one call
MAX_CHARACTERS = 10**9
MAX_IMAGES = 10_000
# an image size or quality: checked as sent, stored in lower case
ImageLabel = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=32,
                                              pattern=r'^[A-Za-z0-9][A-Za-z0-9_.:-]*$')]


class ImagesIn(BaseModel):
    """Images a call generated; priced per image by size and quality through a price override."""

    model_config = ConfigDict(extra='forbid')

    count: Annotated[int, Field(ge=1, le=MAX_IMAGES)]
    size: ImageLabel | None = Field(default=None, description="as the provider names it: '1024x1024', '1792x1024'")
    quality: ImageLabel | None = Field(default=None, description="'standard', 'hd', 'low', 'medium', 'high', ...")


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
    kind: Kind | None = Field(default=None, description='chat, embedding, image, audio_transcription, audio_speech')
    audio_input_tokens: TokenCount = Field(default=0, description='the audio part of input_tokens')
    audio_output_tokens: TokenCount = Field(default=0, description='the audio part of output_tokens')
    image_input_tokens: TokenCount = Field(default=0, description='the image part of input_tokens')
    image_output_tokens: TokenCount = Field(default=0, description='the image part of output_tokens')
    audio_seconds: Annotated[Decimal, Field(ge=0, le=MAX_AUDIO_SECONDS, allow_inf_nan=False)] | None = Field(
        default=None, description='seconds of audio transcribed or spoken; kept to the millisecond')
    characters: Annotated[int, Field(ge=0, le=MAX_CHARACTERS)] = Field(
        default=0, description='characters of text turned into speech')
    images: ImagesIn | None = Field(default=None, description='images generated: count, size, quality')
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
        if self.audio_input_tokens + self.image_input_tokens > self.input_tokens:
            raise ValueError(_parts_exceed('input', self.audio_input_tokens + self.image_input_tokens,
                                           self.input_tokens))
        if self.audio_output_tokens + self.image_output_tokens > self.output_tokens:
            raise ValueError(_parts_exceed('output', self.audio_output_tokens + self.image_output_tokens,
                                           self.output_tokens))
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

    @field_validator('audio_seconds')
    @classmethod
    def _to_the_millisecond(cls, value: Decimal | None) -> Decimal | None:
        return None if value is None else seconds(value)

    @property
    def ts_utc(self) -> datetime:
        return self.ts or datetime.now(UTC)

    def call_units(self) -> CallUnits | None:
        """What the call used beyond text tokens; None when nothing (the usual chat call)."""
        images = self.images
        if not (self.audio_input_tokens or self.audio_output_tokens or self.image_input_tokens
                or self.image_output_tokens or self.audio_seconds is not None or self.characters or images):
            return None
        return CallUnits(self.audio_input_tokens, self.audio_output_tokens, self.image_input_tokens,
                         self.image_output_tokens, self.audio_seconds, self.characters,
                         Images(images.count, images.size, images.quality) if images else None)


def _parts_exceed(side: str, parts: int, total: int) -> str:
    return (f'audio_{side}_tokens + image_{side}_tokens ({parts}) cannot exceed {side}_tokens ({total}); '
            f'{side}_tokens includes audio and image tokens')


def describe_errors(error: ValidationError) -> str:
    """'input_tokens: Input should be greater than or equal to 0; model: Field required'."""
    parts = []
    for item in error.errors(include_url=False):
        where = '.'.join(str(p) for p in item['loc'])
        message = error_message(item)
        parts.append(f'{where}: {message}' if where else message)
    return '; '.join(parts)
