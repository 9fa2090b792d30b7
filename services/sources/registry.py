"""The pullers for the configured sources: a source without its key is simply off."""
from __future__ import annotations

from services.core.settings import SourceSettings
from services.sources.anthropic import AnthropicPuller
from services.sources.base import Puller
from services.sources.litellm import LiteLLMPuller
from services.sources.openai import OpenAIPuller
from services.sources.openrouter import OpenRouterPuller


def build_pullers(settings: SourceSettings) -> dict[str, Puller]:
    pullers: dict[str, Puller] = {}
    if settings.litellm_url and settings.litellm_key:
        pullers['litellm'] = LiteLLMPuller(settings.litellm_url, settings.litellm_key)
    if settings.openai_admin_key:
        pullers['openai_direct'] = OpenAIPuller(settings.openai_admin_key, settings.openai_url)
    if settings.anthropic_admin_key:
        pullers['anthropic_direct'] = AnthropicPuller(settings.anthropic_admin_key, settings.anthropic_url)
    if settings.openrouter_key:
        pullers['openrouter_direct'] = OpenRouterPuller(settings.openrouter_key, settings.openrouter_url,
                                                        management_key=settings.openrouter_management_key or None)
    return pullers
