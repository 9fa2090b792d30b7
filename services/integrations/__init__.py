"""Recording LLM calls from outside SpendGauge: the LiteLLM callback (`litellm_logger`) and the response-header
helper (`client`). Neither imports the app, the database or litellm itself, so they load fast in a LiteLLM proxy.

Also LiteLLM's provider names as ours (genai-prices ids, which the ledger and the billing pullers use), shared
with the LiteLLM puller so that pulled, billed and recorded spend meet under one name.
"""
from __future__ import annotations

# What our clients send as User-Agent: the server names them where it reports refused requests.
CALLBACK_USER_AGENT = 'spendgauge-litellm-callback'
SDK_USER_AGENT = 'spendgauge-sdk'

# LiteLLM's custom_llm_provider -> ours, where they differ; any other name is kept (lower case).
_PROVIDERS = {
    'text-completion-openai': 'openai', 'chatgpt': 'openai', 'openai_like': 'openai',
    'azure': 'azure', 'azure_ai': 'azure', 'azure_text': 'azure',
    'anthropic_text': 'anthropic',
    'bedrock': 'aws', 'bedrock_converse': 'aws', 'sagemaker': 'aws', 'sagemaker_chat': 'aws',
    'gemini': 'google', 'vertex_ai': 'google', 'vertex_ai_beta': 'google', 'palm': 'google',
    'codestral': 'mistral', 'text-completion-codestral': 'mistral',
    'cohere_chat': 'cohere',
    'together_ai': 'together',
    'fireworks_ai': 'fireworks',
    'xai': 'x-ai',
    'voyage': 'voyageai',
    'moonshot': 'moonshotai',
    'github_copilot': 'github-copilot',
    'meta_llama': 'meta',
}
# Names that may prefix a LiteLLM model ('openai/gpt-4o', 'openrouter/anthropic/claude-3.5-sonnet').
_PREFIXES = set(_PROVIDERS) | {
    'openai', 'anthropic', 'openrouter', 'mistral', 'cohere', 'groq', 'deepseek', 'perplexity', 'cerebras',
    'databricks', 'cloudflare', 'novita', 'baseten', 'minimax', 'zai', 'deepinfra', 'ollama', 'ollama_chat',
    'huggingface', 'replicate', 'watsonx', 'nvidia_nim', 'hosted_vllm', 'vllm', 'lm_studio', 'nebius', 'sambanova',
    'ai21', 'dashscope', 'volcengine', 'friendliai', 'predibase', 'nscale', 'hyperbolic', 'featherless_ai',
}


def litellm_provider(name: str | None) -> str:
    """LiteLLM's provider name as ours: 'vertex_ai' -> 'google', 'together_ai' -> 'together'; '' when unknown."""
    text = (name or '').strip().lower()
    return _PROVIDERS.get(text, text)


def split_litellm_model(model: str | None, provider: str | None = None) -> tuple[str, str]:
    """(our provider, model without LiteLLM's provider prefix). With `provider` given only that prefix is cut:
    OpenRouter's 'anthropic/claude-3.5-sonnet' stays whole. The provider is '' when neither names one."""
    model = (model or '').strip()
    hint = (provider or '').strip().lower()
    head, sep, rest = model.partition('/')
    if hint:
        if sep and rest and head.lower() in (hint, litellm_provider(hint)):
            model = rest
        return litellm_provider(hint), model
    if sep and rest and head.lower() in _PREFIXES:
        return litellm_provider(head), rest
    return '', model


def api_root(url: str) -> str:
    """SpendGauge's REST root: 'http://host:8080' or 'http://host:8080/api/v1' -> 'http://host:8080/api/v1'."""
    url = url.strip().rstrip('/')
    return url if url.endswith('/api/v1') else url + '/api/v1'
