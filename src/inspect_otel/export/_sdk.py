"""What the pipeline needs of the OpenTelemetry SDK beyond its stable public API, each behind a
fallback (a test forces every one): the user's own TracerProvider's span processor, the logs
signal's modules; and the sampler from the standard variables, through public API."""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SpanProcessor
from opentelemetry.sdk.trace.sampling import Sampler

_logger = logging.getLogger(__name__)


def sampler_from_env() -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG name, as the SDK builds it: the
    one a TracerProvider made without a sampler reads from the environment (public API)."""
    return SdkTracerProvider(resource=Resource.get_empty(), shutdown_on_exit=False).sampler


_WARNED_SDK: set[str] = set()


def _warn_sdk_once(what: str) -> None:
    if what not in _WARNED_SDK:
        _WARNED_SDK.add(what)
        _logger.warning("inspect-otel: %s", what)


_PROVIDERS_PROCESSOR = "_active_span_processor"  # the SDK TracerProvider's (private) processors


def users_span_processor() -> tuple[SpanProcessor, SdkTracerProvider] | None:
    """The processors of the process's own SDK TracerProvider (the user's OpenTelemetry set-up),
    and the provider; None without one.

    The SDK has no public way to hand a provider a finished span with its own ids (the hook's
    ids are deterministic: a replay must give the live ids), so this reads the provider's
    private ``_active_span_processor``. Without it (an SDK that renamed it), the hook sends with its
    own pipeline (the OTEL_EXPORTER_OTLP_* settings) and says so once."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, SdkTracerProvider):
        return None
    processor = getattr(provider, _PROVIDERS_PROCESSOR, None)
    if callable(getattr(processor, "on_end", None)) and callable(
            getattr(processor, "force_flush", None)):
        return processor, provider
    _warn_sdk_once("this OpenTelemetry SDK's TracerProvider offers no span processor the hook "
                   "can hand its spans to; they go to the hook's own OTLP exporter instead "
                   "(OTEL_EXPORTER_OTLP_*)")
    return None


def logs_sdk() -> tuple[Any, type, type] | None:
    """The logs API module, the SDK's LoggerProvider and BatchLogRecordProcessor. OpenTelemetry
    Python keeps its logs signal in underscored modules (``opentelemetry._logs``,
    ``opentelemetry.sdk._logs``), the only place it has them: imported here, not at module level,
    so an SDK that moves them costs the evaluation results (said once), not the hook."""
    try:
        from opentelemetry import _logs as api
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    except ImportError as ex:
        _warn_sdk_once(f"this OpenTelemetry SDK has no logs signal where the hook looks for it "
                       f"({ex}); evaluation results are not sent as log records (scores still "
                       "go on spans as events)")
        return None
    return api, LoggerProvider, BatchLogRecordProcessor
