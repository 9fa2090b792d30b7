"""What a LiteLLM call used beyond text tokens, as usage event fields: the kind of call (from LiteLLM's call_type),
audio and image tokens (from the usage's token details), images generated (the count from the response, size and
quality from the request's optional params), audio seconds (a transcription's duration) and characters (the text
a speech call spoke). Standard library only: it runs inside the LiteLLM proxy. Never raises on odd input: what
cannot be read is left out, so the event is never refused for it.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

KINDS = {
    'completion': 'chat', 'acompletion': 'chat', 'text_completion': 'chat', 'atext_completion': 'chat',
    'responses': 'chat', 'aresponses': 'chat', 'anthropic_messages': 'chat',
    'embedding': 'embedding', 'aembedding': 'embedding',
    'image_generation': 'image', 'aimage_generation': 'image', 'image_edit': 'image', 'aimage_edit': 'image',
    'transcription': 'audio_transcription', 'atranscription': 'audio_transcription',
    'speech': 'audio_speech', 'aspeech': 'audio_speech',
}
MAX_AUDIO_SECONDS = 1_000_000  # what SpendGauge accepts (services/usage/events.py)
MAX_CHARACTERS = 10**9
MAX_IMAGES = 10_000
REDACTED = 'redacted-by-litellm'  # what LiteLLM logs instead of the input when message logging is off
_IMAGE_LABEL = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}')


def call_units(kwargs: Mapping[str, Any], slo: Mapping[str, Any], usage: Mapping[str, Any], response_obj: Any,
               input_tokens: int, output_tokens: int) -> dict[str, Any]:
    """The event's kind and unit fields, with input_tokens and output_tokens raised where their audio and image
    parts would exceed them (the parts are included in them, as cache tokens are)."""
    kind = KINDS.get(str(slo.get('call_type') or kwargs.get('call_type') or ''))
    found: dict[str, Any] = {'kind': kind} if kind else {}
    prompt = _details(usage, 'prompt_tokens_details', 'input_tokens_details')
    completion = _details(usage, 'completion_tokens_details', 'output_tokens_details')
    parts = {'audio_input_tokens': count(prompt.get('audio_tokens')),
             'image_input_tokens': count(prompt.get('image_tokens')),
             'audio_output_tokens': count(completion.get('audio_tokens')),
             'image_output_tokens': count(completion.get('image_tokens'))}
    if kind == 'image' and not completion:
        parts['image_output_tokens'] = output_tokens  # OpenAI: an image call's output tokens are the image's
    found.update({name: count for name, count in parts.items() if count})
    found['input_tokens'] = max(input_tokens, parts['audio_input_tokens'] + parts['image_input_tokens'])
    found['output_tokens'] = max(output_tokens, parts['audio_output_tokens'] + parts['image_output_tokens'])
    if kind == 'image':
        found['images'] = _images(kwargs, slo, usage, response_obj)
    elif kind == 'audio_transcription':
        seconds = _duration(response_obj)
        if seconds is not None:
            found['audio_seconds'] = seconds
    elif kind == 'audio_speech':
        text = kwargs.get('input')
        if isinstance(text, str) and text and text != REDACTED:
            found['characters'] = min(len(text), MAX_CHARACTERS)
    return found


def _details(usage: Mapping[str, Any], *names: str) -> Mapping[str, Any]:
    for name in names:
        value = usage.get(name)
        if value is not None and not isinstance(value, Mapping):
            value = value.model_dump() if hasattr(value, 'model_dump') else getattr(value, '__dict__', None)
        if isinstance(value, Mapping) and value:
            return value
    return {}


def _images(kwargs: Mapping[str, Any], slo: Mapping[str, Any], usage: Mapping[str, Any],
            response_obj: Any) -> dict[str, Any]:
    """count from the images the response holds (else LiteLLM's output_image_count, else the request's n, else 1);
    size and quality as requested (LiteLLM keeps them in the call's optional_params, not in the logged
    model_parameters), else as answered."""
    params: dict[str, Any] = {}
    for source in (_field(response_obj, 'size', 'quality'), slo.get('model_parameters'), kwargs.get('optional_params')):
        if isinstance(source, Mapping):
            params.update({k: v for k, v in source.items() if v is not None})
    data = _get(response_obj, 'data')
    made = (len(data) if isinstance(data, list) and data
            else count(usage.get('output_image_count')) or count(params.get('n')) or 1)
    images: dict[str, Any] = {'count': min(made, MAX_IMAGES)}
    for name in ('size', 'quality'):
        value = params.get(name)
        if isinstance(value, str) and _IMAGE_LABEL.fullmatch(value.strip()):
            images[name] = value.strip()
    return images


def _duration(response_obj: Any) -> float | None:
    """A transcription's seconds: LiteLLM's own measure where it made one, else the provider's `duration`."""
    hidden = getattr(response_obj, '_hidden_params', None)
    value = hidden.get('audio_transcription_duration') if isinstance(hidden, Mapping) else None
    if value is None:
        value = _get(response_obj, 'duration')
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        return None
    return round(min(float(value), MAX_AUDIO_SECONDS), 3)


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _field(obj: Any, *names: str) -> dict[str, Any]:
    return {name: _get(obj, name) for name in names}


def count(value: Any) -> int:
    """A token or item count from whatever LiteLLM holds there; 0 for what is not one."""
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0
