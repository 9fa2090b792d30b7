"""The pullers for the configured sources: a source without its key is simply off."""
from __future__ import annotations

from app.config import SourceSettings
from services.sources.base import Puller


def build_pullers(settings: SourceSettings) -> dict[str, Puller]:
    pullers: dict[str, Puller] = {}
    # Filled in as the pullers land (services/sources/{litellm,openai,anthropic,openrouter}.py).
    return pullers
