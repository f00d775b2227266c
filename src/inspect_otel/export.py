"""Span model -> OpenTelemetry SDK -> OTLP. All network I/O happens on the SDK's worker threads.

Spans are built as finished ``ReadableSpan`` objects (deterministic ids, Inspect's own
timestamps) and handed to a batch span processor, which only enqueues on the caller's thread.
When the process already has an SDK TracerProvider (the user's own OpenTelemetry set-up), spans go
to that provider's processors, resource and sampler instead of a second pipeline.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import _get_from_env_or_default as sampler_from_env
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import Attributes

from . import __version__
from . import semconv as sc
from .config import Protocol, Settings
from .mapping import EvaluationResult, Kind, SampleTelemetry, SpanData
from .redaction import Redactor

_logger = logging.getLogger(__name__)

_SCOPE = InstrumentationScope(sc.INSTRUMENTATION_NAME, __version__, sc.SCHEMA_URL)
_KINDS = {Kind.INTERNAL: SpanKind.INTERNAL, Kind.CLIENT: SpanKind.CLIENT}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
# Loggers of the OTLP exporters and SDK processors: their per-batch retry noise is summarised in
# one warning at run end instead of flooding the eval's console.
_QUEUE_SIZE = 16384
# A sample's spans and results are handed over at once when it ends: the SDK's default schedule
# delays (5 s for spans, 1 s for log records) would only hold them back from the backend, with
# nothing more to batch in most evals. OTEL_BSP_SCHEDULE_DELAY / OTEL_BLRP_SCHEDULE_DELAY win.
_SCHEDULE_DELAY_MS = 500
_DRAIN_EVERY_SPANS = 512
_EXPORT_LOGGERS = ("opentelemetry.exporter", "opentelemetry.sdk._shared_internal")


class _LastError(logging.Handler):
    """Keeps the exporters' last complaint for the run-end warning (installed once, for good)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.message = record.getMessage()
        except Exception:  # a malformed log call must not break export
            self.message = str(record.msg)


_EXPORT_ERRORS = _LastError()


def _capture_export_logs() -> None:
    for name in _EXPORT_LOGGERS:
        export_logger = logging.getLogger(name)
        if _EXPORT_ERRORS not in export_logger.handlers:
            export_logger.addHandler(_EXPORT_ERRORS)
            export_logger.propagate = False


class _CountingExporter(SpanExporter):
    """Counts spans the backend confirmed, so the hook can report what was lost."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            _logger.debug("span export raised", exc_info=True)
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            with self._lock:
                self.exported += len(spans)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _span_exporter(protocol: Protocol) -> SpanExporter:
    if protocol is Protocol.GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()


def _log_exporter(protocol: Protocol) -> Any:
    if protocol is Protocol.GRPC:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    return OTLPLogExporter()


def _metric_exporter(protocol: Protocol) -> Any:
    if protocol is Protocol.GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    return OTLPMetricExporter()


def build_resource(redactor: Redactor | None = None) -> Resource:
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; without either the SDK
    # default is "unknown_service", so fill in ours underneath. Those variables are free text
    # (deployment.token=..., a URL with credentials): redacted like every other attribute.
    resource = Resource.create()
    if resource.attributes.get(SERVICE_NAME, "").startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "inspect-ai"}))
    redactor = redactor or Redactor()
    return Resource(redactor.attributes(resource.attributes), resource.schema_url)


@dataclass(frozen=True)
class FlushReport:
    completed: bool  # flush finished within the bounded wait
    submitted: int  # spans handed to the pipeline since it started
    exported: int  # of those, spans the backend confirmed (only known for our own pipeline)
    counted: bool  # False when spans went to the user's provider (no count available)
    last_error: str | None

    @property
    def lost(self) -> int:
        return max(self.submitted - self.exported, 0) if self.counted else 0


class TelemetryPipeline:
    """Owns (or borrows) the SDK providers and turns span-model data into OTel signals.

    Every string that leaves through it (span names, attributes, event and link attributes,
    status descriptions, log-record and metric attributes, our resource) passes the secret
    policy here, at one place, whatever mapping produced it (``redaction.py``)."""

    def __init__(self, settings: Settings, *, blocking: bool = False) -> None:
        """``blocking``: drain the span queue every few hundred spans (for replay, where waiting is
        fine and dropping is not); the live hook never blocks."""
        self.settings = settings
        self._blocking = blocking
        self._since_drain = 0
        self._submitted = 0
        self._lock = threading.Lock()
        self._counter: _CountingExporter | None = None
        self._owned: list[Any] = []  # providers/processors we created and must flush
        self._redactor = Redactor(settings.redact_patterns)

        global_tp = trace.get_tracer_provider()
        if isinstance(global_tp, SdkTracerProvider):
            self._processor = global_tp._active_span_processor  # noqa: SLF001 (documented above)
            self._resource = global_tp.resource
            self._sampler = global_tp.sampler
        else:
            self._counter = _CountingExporter(_span_exporter(settings.traces_protocol))
            # A single agent sample can hold thousands of spans: a larger queue than the SDK
            # default (2048) unless the user set OTEL_BSP_MAX_QUEUE_SIZE.
            queue = None if os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") else _QUEUE_SIZE
            delay = None if os.environ.get("OTEL_BSP_SCHEDULE_DELAY") else _SCHEDULE_DELAY_MS
            self._processor = BatchSpanProcessor(self._counter, max_queue_size=queue,
                                                 schedule_delay_millis=delay)
            self._resource = build_resource(self._redactor)
            self._sampler = sampler_from_env()
            self._owned.append(self._processor)
            _capture_export_logs()

        self._event_logger = self._make_event_logger(settings)
        self._instruments = self._make_instruments(settings)
        atexit.register(self.close)

    # --- set-up -------------------------------------------------------------------------------
    def _make_event_logger(self, settings: Settings) -> Any | None:
        if not settings.logs_enabled:
            return None
        provider: Any = _logs.get_logger_provider()
        if not isinstance(provider, LoggerProvider):
            # shutdown_on_exit=False: the SDK's own exit hook would wait the full export timeout
            # on a dead endpoint; close() flushes with a bounded wait instead.
            provider = LoggerProvider(resource=self._resource, shutdown_on_exit=False)
            provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    _log_exporter(settings.logs_protocol),
                    schedule_delay_millis=None if os.environ.get("OTEL_BLRP_SCHEDULE_DELAY")
                    else _SCHEDULE_DELAY_MS)
            )
            self._owned.append(provider)
        return provider.get_logger(
            sc.INSTRUMENTATION_NAME, __version__, schema_url=sc.SCHEMA_URL
        )

    def _make_instruments(self, settings: Settings) -> dict[str, Any] | None:
        if not settings.metrics_enabled:
            return None
        provider: Any = metrics.get_meter_provider()
        if not isinstance(provider, MeterProvider):
            reader = PeriodicExportingMetricReader(_metric_exporter(settings.metrics_protocol))
            provider = MeterProvider(
                resource=self._resource, metric_readers=[reader], shutdown_on_exit=False
            )
            self._owned.append(provider)
        meter = provider.get_meter(sc.INSTRUMENTATION_NAME, __version__, schema_url=sc.SCHEMA_URL)
        return {
            "tokens": meter.create_histogram(
                sc.METRIC_TOKEN_USAGE, unit="{token}",
                description="Number of input and output tokens used",
                explicit_bucket_boundaries_advisory=list(sc.TOKEN_USAGE_BUCKETS),
            ),
            "duration": meter.create_histogram(
                sc.METRIC_OPERATION_DURATION, unit="s",
                description="GenAI operation duration",
                explicit_bucket_boundaries_advisory=list(sc.OPERATION_DURATION_BUCKETS),
            ),
            "samples": meter.create_counter(
                sc.METRIC_SAMPLES, unit="{sample}", description="Finished samples by status"
            ),
            "tools": meter.create_counter(
                sc.METRIC_TOOL_CALLS, unit="{call}", description="Tool calls by tool and error"
            ),
        }

    # --- emit (called on the eval's thread: enqueue only) ---------------------------------------
    def _readable(self, span: SpanData) -> ReadableSpan:
        redact = self._redactor.attributes
        context = SpanContext(span.trace_id, span.span_id, is_remote=False, trace_flags=_SAMPLED)
        parent = (
            SpanContext(span.trace_id, span.parent_span_id, is_remote=False, trace_flags=_SAMPLED)
            if span.parent_span_id
            else None
        )
        links = [
            Link(SpanContext(l.trace_id, l.span_id, is_remote=True, trace_flags=_SAMPLED),
                 redact(l.attributes) or None)
            for l in span.links
        ]
        events = [Event(e.name, redact(e.attributes), e.time_ns) for e in span.events]
        status = (Status(StatusCode.ERROR, self._redactor.text(span.error)) if span.error
                  else Status(StatusCode.UNSET))
        return ReadableSpan(
            name=self._redactor.text(span.name),
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=redact(span.attributes),
            events=events,
            links=links,
            kind=_KINDS[span.kind],
            status=status,
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=_SCOPE,
        )

    def _sampled(self, root: SpanData) -> bool:
        result = self._sampler.should_sample(
            None, root.trace_id, root.name, _KINDS[root.kind], dict(root.attributes)
        )
        return result.decision.is_sampled()

    def emit_spans(self, spans: Sequence[SpanData], sampled: bool | None = None) -> None:
        """Emit spans of one trace; ``spans[0]`` decides sampling for all of them unless the
        caller already did (``sampled``)."""
        if not spans:
            return
        if not (self._sampled(spans[0]) if sampled is None else sampled):
            return
        for span in spans:
            self._processor.on_end(self._readable(span))
            with self._lock:
                self._submitted += 1
            if self._blocking:
                self._since_drain += 1
                if self._since_drain >= _DRAIN_EVERY_SPANS:
                    self.drain()

    def drain(self) -> None:
        """Block until queued spans and records are exported (or the export timeout passes)."""
        self._since_drain = 0
        millis = int(max(self.settings.flush_timeout_s, 30.0) * 1000)
        self._processor.force_flush(millis)
        for owned in self._owned:
            if owned is not self._processor:
                owned.force_flush(millis)

    def emit_results(self, results: Sequence[EvaluationResult], sampled: bool = True) -> None:
        """Evaluation results as log records. They are sent whether or not their trace was
        sampled; the record's trace flags say which, so a backend knows when the trace will never
        arrive."""
        if self._event_logger is None:
            return
        flags = _SAMPLED if sampled else TraceFlags(TraceFlags.DEFAULT)
        for result in results:
            ctx = trace.set_span_in_context(
                NonRecordingSpan(
                    SpanContext(result.trace_id, result.span_id, is_remote=False,
                                trace_flags=flags)
                )
            )
            self._event_logger.emit(
                timestamp=result.time_ns,
                context=ctx,
                severity_number=_logs.SeverityNumber.INFO,
                event_name=sc.EVENT_EVALUATION_RESULT,
                attributes=self._redactor.attributes(result.attributes),
            )

    def record_sample(self, telemetry: SampleTelemetry, task_name: str) -> None:
        instruments = self._instruments
        if instruments is None:
            return
        redact = self._redactor.attributes
        for call in telemetry.model_calls:
            attrs: Attributes = redact(call.attributes)
            instruments["duration"].record(call.duration_s, attrs)
            base = {k: v for k, v in attrs.items() if k != sc.ERROR_TYPE}
            if call.input_tokens is not None:
                instruments["tokens"].record(call.input_tokens, {**base, sc.GEN_AI_TOKEN_TYPE: "input"})
            if call.output_tokens is not None:
                instruments["tokens"].record(call.output_tokens, {**base, sc.GEN_AI_TOKEN_TYPE: "output"})
        # One add per distinct attribute set: each SDK measurement has a fixed cost.
        tool_counts = Counter(tuple(sorted(a.items())) for a in telemetry.tool_calls)
        for tool_attrs, count in tool_counts.items():
            instruments["tools"].add(count, redact(dict(tool_attrs)))
        instruments["samples"].add(1, redact(
            {sc.INSPECT_TASK_NAME: task_name, sc.INSPECT_SAMPLE_STATUS: telemetry.status}))

    def emit_sample(self, telemetry: SampleTelemetry, task_name: str, metrics_on: bool = True) -> None:
        sampled = bool(telemetry.spans) and self._sampled(telemetry.spans[0])
        self.emit_spans(telemetry.spans, sampled=sampled)
        self.emit_results(telemetry.results, sampled=sampled)
        if metrics_on:
            self.record_sample(telemetry, task_name)

    # --- flush (blocking: call from a worker thread) ---------------------------------------------
    def flush(self, timeout_s: float) -> FlushReport:
        """Flush everything within ``timeout_s``; report what the backend has not confirmed."""
        done = threading.Event()

        def work() -> None:
            millis = int(timeout_s * 1000)
            try:
                self._processor.force_flush(millis)
                for owned in self._owned:
                    if owned is not self._processor:
                        owned.force_flush(millis)
            except Exception:
                _logger.debug("flush failed", exc_info=True)
            finally:
                done.set()

        threading.Thread(target=work, name="inspect-otel-flush", daemon=True).start()
        completed = done.wait(timeout_s)
        with self._lock:
            submitted = self._submitted
        return FlushReport(
            completed=completed,
            submitted=submitted,
            exported=self._counter.exported if self._counter else submitted,
            counted=self._counter is not None,
            last_error=_EXPORT_ERRORS.message,
        )

    def close(self) -> None:
        """Bounded flush and shutdown of what we own (also runs at interpreter exit)."""
        try:
            atexit.unregister(self.close)
        except Exception:
            pass
        self.flush(self.settings.flush_timeout_s)

        def shutdown() -> None:
            for owned in self._owned:
                try:
                    owned.shutdown()
                except Exception:
                    _logger.debug("shutdown failed", exc_info=True)

        worker = threading.Thread(target=shutdown, name="inspect-otel-shutdown", daemon=True)
        worker.start()
        worker.join(self.settings.flush_timeout_s)
