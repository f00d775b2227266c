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
import re
import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
    SpanProcessor,
)
from opentelemetry.sdk.trace.sampling import Sampler
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
_UNSET = Status(StatusCode.UNSET)
# Loggers of the OTLP exporters and SDK processors: their per-batch retry noise is summarised in
# one warning at run end instead of flooding the eval's console.
_QUEUE_SIZE = 16384
# A sample's spans and results are handed over at once when it ends: the SDK's default schedule
# delays (5 s for spans, 1 s for log records) would only hold them back from the backend, with
# nothing more to batch in most evals. OTEL_BSP_SCHEDULE_DELAY / OTEL_BLRP_SCHEDULE_DELAY win.
_SCHEDULE_DELAY_MS = 500
_DRAIN_EVERY_SPANS = 512
_METRIC_ATTRIBUTE_SETS = 1024  # distinct model-call attribute sets remembered (models x errors)
# What a sampler sees of a trace's root: the identity known when the trace starts, also in replay.
_SAMPLING_ATTRIBUTES = frozenset({
    sc.INSPECT_RUN_ID, sc.INSPECT_EVAL_ID, sc.INSPECT_EVAL_SET_ID, sc.INSPECT_TASK_NAME,
    sc.INSPECT_SAMPLE_ID, sc.INSPECT_SAMPLE_EPOCH, sc.INSPECT_SAMPLE_UUID, sc.INSPECT_SPAN_KIND,
    sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_WORKFLOW_NAME,
})
# What the exit grants a failing pipeline's shutdown (exporters stopped, nothing to deliver).
_FAILING_SHUTDOWN_WAIT_S = 0.5
_EXPORT_LOGGERS = ("opentelemetry.exporter", "opentelemetry.sdk._shared_internal")


class _LastError(logging.Handler):
    """Keeps the exporters' last complaints for the run-end warning and the export's cause
    (installed once, for good)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.message: str | None = None
        self.recent: deque[str] = deque(maxlen=8)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.message = record.getMessage()
        except Exception:  # a malformed log call must not break export
            self.message = str(record.msg)
        self.recent.append(self.message)


_EXPORT_ERRORS = _LastError()


# The exporters' complaints -> the cause a user can act on (first match wins).
_HTTP_STATUS = re.compile(r"code: (\d{3}), reason: ([^,]*)")
_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Failed parsing HTTP/2|http1\.x server", re.I),
     "protocol mismatch: gRPC sent to an endpoint that speaks HTTP/1 (OTLP/HTTP is port 4318: "
     "use --protocol http/protobuf, or the gRPC port 4317)"),
    (re.compile(r"RemoteDisconnected|BadStatusLine|Connection aborted|without response", re.I),
     "protocol mismatch: the endpoint closed the connection without an HTTP answer (a gRPC "
     "port? use --protocol grpc, or the OTLP/HTTP port 4318)"),
    (re.compile(r"Connection refused|ECONNREFUSED", re.I),
     "connection refused: nothing listens at {endpoint}"),
    (re.compile(r"Name or service not known|nodename nor servname|getaddrinfo", re.I),
     "the endpoint's host name does not resolve: {endpoint}"),
    (re.compile(r"timed? ?out|DEADLINE_EXCEEDED", re.I),
     "timeout: {endpoint} did not answer within OTEL_EXPORTER_OTLP_TIMEOUT"),
)


def export_cause(messages: Sequence[str], endpoint: str) -> str | None:
    """Why an export failed, in words a user can act on, from the exporters' log messages
    (refused, timeout, an HTTP status with the URL, a protocol mismatch); None if unknown."""
    # The SDK's summaries ("... due to timeout, max retries or shutdown", "already shutdown") name
    # no cause: whether a transient error was logged before them is a race with the flush.
    useful = [m for m in messages if not _NO_CAUSE.search(m)]
    for message in reversed(useful):
        status = _HTTP_STATUS.search(message)
        if status:
            return f"HTTP {status.group(1)} {status.group(2).strip()} from {endpoint}"
    text = "\n".join(useful)
    for pattern, cause in _CAUSES:
        if pattern.search(text):
            return cause.format(endpoint=endpoint)
    if useful:
        return useful[-1][:300]
    if any("due to timeout" in m for m in messages):  # no answer in time (or none at all: a
        return _CAUSES[-1][1].format(endpoint=endpoint)  # probe tells refused apart)
    return None


_NO_CAUSE = re.compile(r"due to timeout, max retries or shutdown|already shutdown", re.I)


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _probe(url: str, timeout_s: float = 1.0) -> str | None:
    """One bounded look at the endpoint: "refused" when nothing listens, "http2" when the server
    answers an HTTP/2 connection preface with HTTP/2 frames (a gRPC port), else None."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout_s) as conn:
            conn.settimeout(timeout_s)
            conn.sendall(_HTTP2_PREFACE)
            head = conn.recv(9)
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return None
    return "http2" if len(head) == 9 and head[3] == 4 else None  # 4: a SETTINGS frame


def traces_url(settings: Settings) -> str:
    """The traces URL the exporter posts to (for messages)."""
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    base = (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").rstrip("/")
    if settings.traces_protocol is Protocol.GRPC:
        return base or "(the SDK's default gRPC endpoint)"
    return f"{base}/v1/traces" if base else "(the SDK's default endpoint)"


def _capture_export_logs() -> None:
    for name in _EXPORT_LOGGERS:
        export_logger = logging.getLogger(name)
        if _EXPORT_ERRORS not in export_logger.handlers:
            export_logger.addHandler(_EXPORT_ERRORS)
            export_logger.propagate = False


_RAISED: set[str] = set()


def _warn_export_raised(ex: Exception) -> None:
    """An exporter that raises (rather than report a failure) loses its batch: said at WARNING,
    once per cause, not once per batch."""
    cause = f"{type(ex).__name__}: {ex}"
    if cause not in _RAISED:
        _RAISED.add(cause)
        _logger.warning("inspect-otel: the span exporter raised (%s); its batches are lost",
                        cause, exc_info=True)


class _CountingExporter(SpanExporter):
    """Counts spans the backend confirmed, so the hook can report what was lost."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
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
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


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


def _users_span_processor() -> tuple[SpanProcessor, SdkTracerProvider] | None:
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


def _logs_sdk() -> tuple[Any, type, type] | None:
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


# The SDK's OTLP exporters, imported when a pipeline is built: protobuf, grpc and requests load
# only when the hook is on (Inspect imports the entry point in every eval process).
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


class _Resource(Resource):
    """A Resource whose hash is computed once. The OTLP encoders group every span and log record
    by resource, and ``Resource.__hash__`` serialises all its attributes to JSON each time: about
    a tenth of the exporter thread's CPU for this hook's spans. Attributes never change."""

    def __init__(self, attributes: Attributes, schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def _exemplar_filter() -> Any | None:
    """The SDK's filter from OTEL_METRICS_EXEMPLAR_FILTER when set; otherwise always off. The
    hook records at a sample's end, outside any span context, so the SDK's default (trace based)
    would never keep an exemplar: it would only cost its check on every measurement."""
    if os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER"):
        return None
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter

    return AlwaysOffExemplarFilter()


def build_resource(redactor: Redactor | None = None) -> Resource:
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; without either the SDK
    # default is "unknown_service", so fill in ours underneath. Those variables are free text
    # (deployment.token=..., a URL with credentials): redacted like every other attribute.
    resource = Resource.create()
    if resource.attributes.get(SERVICE_NAME, "").startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "inspect-ai"}))
    redactor = redactor or Redactor()
    return _Resource(redactor.attributes(resource.attributes), resource.schema_url)


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

    def __init__(self, settings: Settings, *, blocking: bool = False,
                 exporters: tuple[SpanExporter, Any] | None = None) -> None:
        """``blocking``: drain the span queue every few hundred spans (for replay, where waiting is
        fine and dropping is not); the live hook never blocks. ``exporters``: a span and a log
        record exporter to use instead of OTLP (``export --to-file``; no metrics then)."""
        self._file_exporters = exporters
        self.settings = settings
        self._blocking = blocking
        self._since_drain = 0
        self._submitted = 0
        self._lock = threading.Lock()
        self._counter: _CountingExporter | None = None
        self._owned: list[Any] = []  # providers/processors we created and must flush
        # Exporters we created: shut down first at exit, which ends their retry back-off at once.
        self._exporters: list[Any] = []
        # Set when a flush left spans unconfirmed: the endpoint is failing, so the exit does not
        # wait for it a second time (the run end already waited INSPECT_OTEL_FLUSH_TIMEOUT).
        self._failing = False
        self._redactor = Redactor(settings.redact_patterns)
        self._metric_attributes: dict[tuple[Any, ...], tuple[dict[str, Any], ...]] = {}

        users = _users_span_processor() if exporters is None else None
        if users is not None:
            self._processor, global_tp = users
            self._resource = global_tp.resource
            self._sampler = global_tp.sampler
        else:
            spans_out = (exporters[0] if exporters is not None
                         else _span_exporter(settings.traces_protocol))
            self._exporters.append(spans_out)
            self._counter = _CountingExporter(spans_out)
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
            _EXPORT_ERRORS.recent.clear()  # complaints of this pipeline only

        self._event_logger = self._make_event_logger(settings)
        self._instruments = self._make_instruments(settings)
        atexit.register(self.close)

    # --- set-up -------------------------------------------------------------------------------
    def _make_event_logger(self, settings: Settings) -> Any | None:
        if not settings.logs_enabled:
            return None
        logs_sdk = _logs_sdk()
        if logs_sdk is None:
            return None
        api, LoggerProvider, BatchLogRecordProcessor = logs_sdk  # noqa: N806 (classes)
        self._info = api.SeverityNumber.INFO
        provider: Any = api.get_logger_provider()
        if not isinstance(provider, LoggerProvider) or self._file_exporters is not None:
            # shutdown_on_exit=False: the SDK's own exit hook would wait the full export timeout
            # on a dead endpoint; close() flushes with a bounded wait instead.
            provider = LoggerProvider(resource=self._resource, shutdown_on_exit=False)
            log_exporter = (self._file_exporters[1] if self._file_exporters is not None
                            else _log_exporter(settings.logs_protocol))
            self._exporters.append(log_exporter)
            provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    log_exporter,
                    schedule_delay_millis=None if os.environ.get("OTEL_BLRP_SCHEDULE_DELAY")
                    else _SCHEDULE_DELAY_MS)
            )
            self._owned.append(provider)
        return provider.get_logger(
            sc.INSTRUMENTATION_NAME, __version__, schema_url=sc.SCHEMA_URL
        )

    def _make_instruments(self, settings: Settings) -> dict[str, Any] | None:
        if not settings.metrics_enabled or self._file_exporters is not None:
            return None
        provider: Any = metrics.get_meter_provider()
        if not isinstance(provider, MeterProvider):
            metric_exporter = _metric_exporter(settings.metrics_protocol)
            self._exporters.append(metric_exporter)
            reader = PeriodicExportingMetricReader(metric_exporter)
            provider = MeterProvider(
                resource=self._resource, metric_readers=[reader], shutdown_on_exit=False,
                exemplar_filter=_exemplar_filter(),
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
        ] if span.links else ()
        events = [Event(e.name, redact(e.attributes), e.time_ns)
                  for e in span.events] if span.events else ()
        status = (Status(StatusCode.ERROR, self._redactor.text(span.error)) if span.error
                  else _UNSET)
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

    def sampled(self, root: SpanData) -> bool:
        """The sampler's decision for a trace, from what is known when it starts (trace id, root
        name and kind, identity attributes): live, a sample's spans leave before its root."""
        attributes = {k: v for k, v in root.attributes.items() if k in _SAMPLING_ATTRIBUTES}
        result = self._sampler.should_sample(
            None, root.trace_id, root.name, _KINDS[root.kind], attributes
        )
        return result.decision.is_sampled()

    def emit_spans(self, spans: Sequence[SpanData], sampled: bool | None = None) -> None:
        """Emit spans of one trace; ``spans[0]`` decides sampling for all of them unless the
        caller already did (``sampled``)."""
        if not spans:
            return
        if not (self.sampled(spans[0]) if sampled is None else sampled):
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
                severity_number=self._info,
                event_name=sc.EVENT_EVALUATION_RESULT,
                attributes=self._redactor.attributes(result.attributes),
            )

    def emit_sample_start(self, root: SpanData) -> None:
        """The running marker of a live (sampled) sample: an ``inspect.sample.start`` event in
        its trace's context (the root's span id), with the identity the root will carry."""
        if self._event_logger is None:
            return
        self._event_logger.emit(
            timestamp=root.start_ns,
            context=trace.set_span_in_context(NonRecordingSpan(SpanContext(
                root.trace_id, root.span_id, is_remote=False, trace_flags=_SAMPLED))),
            severity_number=self._info,
            event_name=sc.EVENT_SAMPLE_START,
            attributes=self._redactor.attributes(root.attributes),
        )

    def record_sample(self, telemetry: SampleTelemetry, task_name: str) -> None:
        instruments = self._instruments
        if instruments is None:
            return
        redact = self._redactor.attributes
        for call in telemetry.model_calls:
            attrs, input_attrs, output_attrs = self._call_attributes(call.attributes)
            instruments["duration"].record(call.duration_s, attrs)
            if call.input_tokens is not None:
                instruments["tokens"].record(call.input_tokens, input_attrs)
            if call.output_tokens is not None:
                instruments["tokens"].record(call.output_tokens, output_attrs)
        # One add per distinct attribute set: each SDK measurement has a fixed cost.
        tool_counts = Counter(tuple(sorted(a.items())) for a in telemetry.tool_calls)
        for tool_attrs, count in tool_counts.items():
            instruments["tools"].add(count, redact(dict(tool_attrs)))
        instruments["samples"].add(1, redact(
            {sc.INSPECT_TASK_NAME: task_name, sc.INSPECT_SAMPLE_STATUS: telemetry.status}))

    def _call_attributes(self, attributes: Attributes) -> tuple[dict[str, Any], ...]:
        """A model call's metric attributes, redacted: for its duration, its input tokens and its
        output tokens. Calls of one model share them, so they are built once (the SDK copies
        what it keeps)."""
        key = tuple(attributes.items()) if attributes else ()
        try:
            found = self._metric_attributes.get(key)
        except TypeError:  # a list value: not worth remembering
            key, found = None, None
        if found is None:
            attrs = self._redactor.attributes(attributes or {})
            base = {k: v for k, v in attrs.items() if k != sc.ERROR_TYPE}
            found = (attrs, {**base, sc.GEN_AI_TOKEN_TYPE: "input"},
                     {**base, sc.GEN_AI_TOKEN_TYPE: "output"})
            if key is not None:
                if len(self._metric_attributes) >= _METRIC_ATTRIBUTE_SETS:
                    self._metric_attributes.clear()
                self._metric_attributes[key] = found
        return found

    def emit_sample(self, telemetry: SampleTelemetry, task_name: str, metrics_on: bool = True) -> None:
        sampled = bool(telemetry.spans) and self.sampled(telemetry.spans[0])
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
        report = FlushReport(
            completed=completed,
            submitted=submitted,
            exported=self._counter.exported if self._counter else submitted,
            counted=self._counter is not None,
            last_error=_EXPORT_ERRORS.message,
        )
        self._failing = self._failing or not completed or report.lost > 0
        return report

    def failure_cause(self) -> str | None:
        """Why spans were not confirmed (see export_cause), from the exporters' complaints. An
        OTLP/HTTP request to a gRPC port goes unanswered like a hung server: a timeout is told
        apart by asking the endpoint whether it speaks HTTP/2 (one bounded probe)."""
        url = traces_url(self.settings)
        cause = export_cause(list(_EXPORT_ERRORS.recent), url)
        if self.settings.traces_protocol is Protocol.HTTP_PROTOBUF and (
                cause is None or cause.startswith("timeout")):
            probe = _probe(url)
            if probe == "refused":
                return export_cause(["Connection refused"], url)
            if probe == "http2":
                return ("protocol mismatch: the endpoint speaks HTTP/2 only, as a gRPC port does "
                        "(use --protocol grpc, or the OTLP/HTTP port 4318)")
        return cause

    def close(self) -> None:
        """Bounded flush and shutdown of what we own (also runs at interpreter exit).

        The whole wait for a dead endpoint is one INSPECT_OTEL_FLUSH_TIMEOUT per process: when a
        flush already found the endpoint failing (the run end's), the exit neither flushes again
        nor waits for the SDK's retries, which would otherwise back off for their full export
        timeout per exporter."""
        try:
            atexit.unregister(self.close)
        except Exception:
            pass
        if not self._failing:
            self.flush(self.settings.flush_timeout_s)
        failing = self._failing

        def shutdown() -> None:
            # Exporters first when failing: their shutdown ends a retry back-off at once, so the
            # processors' own shutdown (a last export attempt) returns instead of retrying.
            ordered = [*self._exporters, *self._owned] if failing else self._owned
            for owned in ordered:
                try:
                    owned.shutdown()
                except Exception:
                    _logger.debug("shutdown failed", exc_info=True)

        worker = threading.Thread(target=shutdown, name="inspect-otel-shutdown", daemon=True)
        worker.start()
        worker.join(_FAILING_SHUTDOWN_WAIT_S if failing else self.settings.flush_timeout_s)
