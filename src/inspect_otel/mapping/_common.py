"""Small shared pieces of the mapping: time, providers, generate config."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from .. import semconv as sc
from ..content import ContentPolicy

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Inspect provider prefix -> gen_ai.provider.name well-known value (custom prefixes pass through).
PROVIDERS: Mapping[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "azureai": "azure.ai.inference",
    "mistral": "mistral_ai",
    "groq": "groq",
    "grok": "x_ai",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
    "cohere": "cohere",
    "watsonx": "ibm.watsonx.ai",
}
# Providers whose second path segment names the real provider (e.g. openai/azure/gpt-4o).
_NESTED_PROVIDERS: Mapping[tuple[str, str], str] = {
    ("openai", "azure"): "azure.ai.openai",
    ("anthropic", "bedrock"): "aws.bedrock",
    ("anthropic", "vertex"): "gcp.vertex_ai",
}

# GenerateConfig field -> GenAI request attribute. Everything else: inspect.generate_config.<key>.
GENERATE_CONFIG_ATTRIBUTES: Mapping[str, str] = {
    "temperature": sc.GEN_AI_REQUEST_TEMPERATURE,
    "max_tokens": sc.GEN_AI_REQUEST_MAX_TOKENS,
    "top_p": sc.GEN_AI_REQUEST_TOP_P,
    "top_k": sc.GEN_AI_REQUEST_TOP_K,
    "seed": sc.GEN_AI_REQUEST_SEED,
    "stop_seqs": sc.GEN_AI_REQUEST_STOP_SEQUENCES,
    "frequency_penalty": sc.GEN_AI_REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": sc.GEN_AI_REQUEST_PRESENCE_PENALTY,
}
# Config values that are bulky or not parameters of the request.
_SKIPPED_CONFIG = {"num_choices", "extra_body", "extra_headers", "response_schema", "cache_prompt"}


def to_ns(value: datetime | str | None) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def split_model(model: str) -> tuple[str, str]:
    """Inspect model name -> (gen_ai.provider.name, request model without provider prefix)."""
    parts = model.split("/")
    if len(parts) == 1:
        return "_OTHER", model
    prefix = parts[0]
    if len(parts) > 2 and (prefix, parts[1]) in _NESTED_PROVIDERS:
        return _NESTED_PROVIDERS[(prefix, parts[1])], "/".join(parts[2:])
    return PROVIDERS.get(prefix, prefix), "/".join(parts[1:])


def model_attributes(model: str) -> dict[str, Any]:
    provider, request_model = split_model(model)
    return {
        sc.GEN_AI_PROVIDER_NAME: provider,
        sc.GEN_AI_REQUEST_MODEL: request_model,
        sc.INSPECT_MODEL: model,
    }


def attribute_value(value: Any, policy: ContentPolicy) -> Any:
    """A value an OTel attribute can hold: primitives and homogeneous lists, else JSON."""
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        return policy.clean(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(policy.clean(v) for v in value)
    if isinstance(value, (list, tuple)) and value and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        return tuple(value)
    return policy.clean_json(value)


def generate_config_attributes(config: Any, policy: ContentPolicy) -> dict[str, Any]:
    values = config.model_dump(exclude_none=True) if config is not None else {}
    attrs: dict[str, Any] = {}
    for key, value in values.items():
        if key in _SKIPPED_CONFIG or value in ([], {}):
            continue
        name = GENERATE_CONFIG_ATTRIBUTES.get(key, sc.INSPECT_GENERATE_CONFIG_PREFIX + key)
        attrs[name] = attribute_value(value, policy)
    choices = values.get("num_choices")
    if isinstance(choices, int) and choices != 1:
        attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = choices
    return attrs


def usage_attributes(usage: Any) -> dict[str, int]:
    """Inspect ModelUsage -> gen_ai.usage.* (semconv input tokens include the cache)."""
    if usage is None:
        return {}
    cache_read = usage.input_tokens_cache_read or 0
    cache_write = usage.input_tokens_cache_write or 0
    attrs = {
        sc.GEN_AI_USAGE_INPUT_TOKENS: usage.input_tokens + cache_read + cache_write,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: usage.output_tokens,
    }
    if usage.input_tokens_cache_read is not None:
        attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = cache_read
    if usage.input_tokens_cache_write is not None:
        attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = cache_write
    if usage.reasoning_tokens is not None:
        attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
    return attrs


_ERROR_CLASS = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(?:\(|:|$)")


def error_type(message: str | None, default: str) -> str:
    """Low-cardinality error.type from an Inspect error string: 'RuntimeError(...)', 'X: msg'."""
    match = _ERROR_CLASS.match(message or "")
    return match.group(1) if match else default
