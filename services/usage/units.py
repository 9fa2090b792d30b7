"""What a call consumed beyond text tokens: audio and image tokens, audio seconds, characters spoken, images made;
and the kind of call. Stored with the event (`usage_events.kind`, `usage_events.units`) so a call can be priced again.

Audio and image tokens are parts of `input_tokens` / `output_tokens` (as cache tokens are, and as OpenAI reports
them in `prompt_tokens_details` / `completion_tokens_details`), priced at their own rates where a price has them.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

Kind = Literal['chat', 'embedding', 'image', 'audio_transcription', 'audio_speech']
KINDS: tuple[Kind, ...] = ('chat', 'embedding', 'image', 'audio_transcription', 'audio_speech')
ANY = '*'  # an image price for any size or any quality
MILLISECOND = Decimal('0.001')
TOKEN_PARTS = ('audio_input_tokens', 'audio_output_tokens', 'image_input_tokens', 'image_output_tokens')


def seconds(value: Decimal | float | int | str) -> Decimal:
    """Audio seconds to the millisecond (half-even): providers report durations as floats such as 8.470000267."""
    return Decimal(str(value)).quantize(MILLISECOND, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Images:
    count: int
    size: str | None = None  # '1024x1024', '1792x1024', ... as the provider names it
    quality: str | None = None  # 'standard', 'hd', 'low', 'medium', 'high', ...


@dataclass(frozen=True)
class CallUnits:
    audio_input_tokens: int = 0  # of input_tokens
    audio_output_tokens: int = 0  # of output_tokens
    image_input_tokens: int = 0  # of input_tokens
    image_output_tokens: int = 0  # of output_tokens
    audio_seconds: Decimal | None = None  # transcribed or spoken, to the millisecond
    characters: int = 0  # of text turned into speech
    images: Images | None = None  # generated

    @property
    def has_token_parts(self) -> bool:
        return bool(self.audio_input_tokens or self.audio_output_tokens or self.image_input_tokens
                    or self.image_output_tokens)

    def as_json(self) -> dict[str, Any] | None:
        """The stored form: only what was given; None when nothing was."""
        stored: dict[str, Any] = {name: getattr(self, name) for name in TOKEN_PARTS if getattr(self, name)}
        if self.audio_seconds is not None:
            stored['audio_seconds'] = float(self.audio_seconds)  # three decimals at most: exact as a JSON number
        if self.characters:
            stored['characters'] = self.characters
        if self.images is not None:
            stored['images'] = {k: v for k, v in (('count', self.images.count), ('size', self.images.size),
                                                  ('quality', self.images.quality)) if v is not None}
        return stored or None

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None) -> CallUnits | None:
        if not stored:
            return None
        images = stored.get('images')
        audio = stored.get('audio_seconds')
        return cls(**{name: int(stored.get(name) or 0) for name in TOKEN_PARTS},
                   audio_seconds=None if audio is None else seconds(audio),
                   characters=int(stored.get('characters') or 0),
                   images=Images(int(images['count']), images.get('size'), images.get('quality')) if images else None)
