"""The SDK's OTLP exporters, as they are, and what the pipeline wraps around its span exporter."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..config import Protocol

_logger = logging.getLogger(__name__)


_RAISED: set[str] = set()


def _warn_export_raised(ex: Exception) -> None:
    """An exporter that raises (rather than report a failure) loses its batch: said at WARNING,
    once per cause, not once per batch."""
    cause = f"{type(ex).__name__}: {ex}"
    if cause not in _RAISED:
        _RAISED.add(cause)
        _logger.warning("inspect-otel: the span exporter raised (%s); its batches are lost",
                        cause, exc_info=True)


class CountingExporter(SpanExporter):
    """Counts spans the backend confirmed, so the hook can report what was lost, and tells
    ``on_failure`` (on the exporter's thread) when a batch was not confirmed."""

    def __init__(self, inner: SpanExporter,
                 on_failure: Callable[[], None] = lambda: None) -> None:
        self._inner = inner
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as ex:  # noqa: BLE001 - e.g. an SDK whose exporter changed its contract
            _warn_export_raised(ex)
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            with self._lock:
                self.exported += len(spans)
        else:
            self._on_failure()
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


# The SDK's OTLP exporters, imported when a pipeline is built: protobuf, grpc and requests load
# only when the hook is on (Inspect imports the entry point in every eval process).
def span_exporter(protocol: Protocol, timeout_s: float | None = None) -> SpanExporter:
    """Configured by the standard OTEL_EXPORTER_OTLP_* variables, as always; ``timeout_s``
    instead of OTEL_EXPORTER_OTLP_TIMEOUT when given."""
    if protocol is Protocol.GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(timeout=timeout_s)


def log_exporter(protocol: Protocol) -> Any:
    if protocol is Protocol.GRPC:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    return OTLPLogExporter()


def metric_exporter(protocol: Protocol) -> Any:
    if protocol is Protocol.GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    return OTLPMetricExporter()
