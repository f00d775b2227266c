"""Where a model call went: ``server.address`` / ``server.port`` from the model's base URL.

Inspect resolves a model's base URL in this order (``inspect_ai.model._providers.util.
model_base_url``): the one given for that model (``--model-base-url``, a role's ``base_url``),
else the provider's environment variables, else ``INSPECT_EVAL_MODEL_BASE_URL``, else the
provider SDK's default. :func:`model_endpoints` takes what that needs from the eval spec and the
environment once per task (at the edge); :func:`server_attributes` answers per model call (pure).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .. import semconv as sc

# Inspect provider prefix -> (base URL environment variables, in Inspect's order; the SDK default).
# A provider whose endpoint depends on a region or a deployment (bedrock, azure, vertex) has no
# default: its chat spans carry a server only when a base URL is set.
PROVIDER_ENDPOINTS: Mapping[str, tuple[tuple[str, ...], str | None]] = {
    "openai": (("OPENAI_BASE_URL",), "https://api.openai.com/v1"),
    "anthropic": (("ANTHROPIC_BASE_URL",), "https://api.anthropic.com"),
    "google": (("GOOGLE_BASE_URL",), "https://generativelanguage.googleapis.com"),
    "mistral": (("MISTRAL_BASE_URL",), "https://api.mistral.ai"),
    "groq": (("GROQ_BASE_URL",), "https://api.groq.com"),
    "grok": (("XAI_BASE_URL", "GROK_BASE_URL"), "https://api.x.ai"),
    "deepseek": (("DEEPSEEK_BASE_URL",), "https://api.deepseek.com"),
    "perplexity": (("PERPLEXITY_BASE_URL",), "https://api.perplexity.ai/v1"),
    "together": (("TOGETHER_BASE_URL",), "https://api.together.xyz/v1"),
    "fireworks": (("FIREWORKS_BASE_URL",), "https://api.fireworks.ai/inference/v1"),
    "openrouter": (("OPENROUTER_BASE_URL",), "https://openrouter.ai/api/v1"),
    "ollama": (("OLLAMA_BASE_URL",), "http://localhost:11434/v1"),
}
# Providers that answer in-process: no server.
NO_SERVER_PROVIDERS = frozenset({"mockllm", "none", "hf", "transformer_lens", "nnterp"})
# Two-segment prefixes served elsewhere than their first segment (openai/azure/gpt-4o).
NESTED_PROVIDER_ENDPOINTS: Mapping[tuple[str, str], tuple[tuple[str, ...], str | None]] = {
    ("openai", "azure"): (("AZUREAI_OPENAI_BASE_URL", "AZURE_OPENAI_BASE_URL"), None),
    ("anthropic", "bedrock"): (("ANTHROPIC_BEDROCK_BASE_URL",), None),
    ("anthropic", "vertex"): (("ANTHROPIC_VERTEX_BASE_URL",), None),
}
EVAL_MODEL_BASE_URL = "INSPECT_EVAL_MODEL_BASE_URL"
_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class ModelEndpoints:
    """The base URLs a task's model calls can use, as Inspect would resolve them."""

    model: str = ""
    model_base_url: str | None = None  # EvalSpec.model_base_url (the model under evaluation)
    role_base_urls: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (role, model)
    environ: Mapping[str, str] = field(default_factory=dict)  # only *_BASE_URL variables


def _role_urls(model_roles: Any) -> dict[tuple[str, str], str]:
    urls: dict[tuple[str, str], str] = {}
    for role, configs in (model_roles or {}).items():
        for config in configs if isinstance(configs, list) else [configs]:
            if getattr(config, "base_url", None):
                urls[(role, config.model)] = config.base_url
    return urls


def model_endpoints(spec: Any, environ: Mapping[str, str]) -> ModelEndpoints:
    """What :func:`server_attributes` needs, from an EvalSpec and an environment."""
    return ModelEndpoints(
        model=spec.model,
        model_base_url=getattr(spec, "model_base_url", None) or None,
        role_base_urls=_role_urls(getattr(spec, "model_roles", None)),
        environ={k: v for k, v in environ.items() if k.endswith("_BASE_URL") and v},
    )


def base_url(model: str, role: str | None, endpoints: ModelEndpoints) -> str | None:
    """The base URL Inspect used for one call of ``model`` (in ``role``), None if it has none."""
    if role is not None and (role, model) in endpoints.role_base_urls:
        return endpoints.role_base_urls[(role, model)]
    if model == endpoints.model and endpoints.model_base_url:
        return endpoints.model_base_url
    parts = model.split("/")
    prefix = parts[0]
    if len(parts) < 2 or prefix in NO_SERVER_PROVIDERS:
        return None
    # Providers not in the table follow Inspect's convention for OpenAI-compatible services.
    env_vars, default = NESTED_PROVIDER_ENDPOINTS.get(
        (prefix, parts[1]),
        PROVIDER_ENDPOINTS.get(prefix, ((f"{prefix.upper().replace('-', '_')}_BASE_URL",), None)),
    )
    for name in (*env_vars, EVAL_MODEL_BASE_URL):
        if endpoints.environ.get(name):
            return endpoints.environ[name]
    return default


def server_attributes(url: str | None) -> dict[str, Any]:
    """``server.address`` and ``server.port`` of a base URL: the host only, never credentials."""
    return dict(_server(url)) if url else {}


@functools.lru_cache(maxsize=256)  # a task has a few base URLs and many calls
def _server(url: str) -> tuple[tuple[str, Any], ...]:
    return tuple(_parse_server(url).items())


def _parse_server(url: str) -> dict[str, Any]:
    try:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        host = parts.hostname
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number, a bad IPv6 literal
        return {}
    if not host:
        return {}
    attrs: dict[str, Any] = {sc.SERVER_ADDRESS: host}
    if port is not None:
        attrs[sc.SERVER_PORT] = port
    return attrs
