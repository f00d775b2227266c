"""The endpoint, checked when a run starts, so that a wrong one is said within seconds rather
than at the end of a long eval.

One empty OTLP traces export request (zero spans) through the SDK's own exporter, built as the
pipeline's is (endpoint, headers, TLS, compression from the standard variables) but with a short
timeout, on a thread of its own: the eval never waits for it.
"""

from __future__ import annotations

from opentelemetry.sdk.trace.export import SpanExportResult

from ..config import Settings
from ._diagnosis import (
    EXPORT_ERRORS,
    TIMEOUT,
    Cause,
    capture_export_logs,
    cause_of_silence,
    diagnose,
    traces_url,
)
from ._exporters import span_exporter

CHECK_TIMEOUT_S = 3.0


def check_endpoint(settings: Settings) -> Cause | None:
    """Why the endpoint refuses spans (refused, unresolved, TLS, an HTTP/gRPC status such as 401
    or 404, a protocol mismatch); None when it took the empty request, or only did not answer in
    time (slow is not wrong: the run's own exports say so if it stays slow)."""
    exporter = span_exporter(settings.traces_protocol, timeout_s=CHECK_TIMEOUT_S)
    capture_export_logs()  # after the exporter's module (and its loggers) exist
    try:
        with EXPORT_ERRORS.listening() as heard:
            result = exporter.export(())
    finally:
        exporter.shutdown()
    if result is SpanExportResult.SUCCESS:
        return None
    url = traces_url(settings)
    cause = diagnose(heard, url)
    if cause is None or cause.kind == TIMEOUT:
        return cause_of_silence(url, settings)
    return cause
