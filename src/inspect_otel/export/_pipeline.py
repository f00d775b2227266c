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

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import Attributes

from .. import __version__
from .. import semconv as sc
from ..config import Settings
from ..mapping import EvaluationResult, Kind, SampleTelemetry, SpanData
from ..redaction import Redactor
from ._diagnosis import (
    EXPORT_ERRORS,
    SPANS,
    TIMEOUT,
    Cause,
    advice,
    capture_export_logs,
    cause_of_silence,
    diagnose,
    traces_url,
)
from ._exporters import CountingExporter, log_exporter, metric_exporter, span_exporter
from ._request_size import REQUEST_LIMITS, SizeBoundLogExporter, SizeBoundSpanExporter
from ._sdk import logs_sdk as load_logs_sdk
from ._sdk import sampler_from_env, users_span_processor

_logger = logging.getLogger(__name__)

_SCOPE = InstrumentationScope(sc.INSTRUMENTATION_NAME, __version__, sc.SCHEMA_URL)
_KINDS = {Kind.INTERNAL: SpanKind.INTERNAL, Kind.CLIENT: SpanKind.CLIENT}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
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
    problem: str | None  # why spans were not confirmed, and what to do, as far as known

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
        self._counter: CountingExporter | None = None
        self._owned: list[Any] = []  # providers/processors we created and must flush
        # Exporters we created: shut down first at exit, which ends their retry back-off at once.
        self._exporters: list[Any] = []
        # Set when a flush left spans unconfirmed: the endpoint is failing, so the exit does not
        # wait for it a second time (the run end already waited INSPECT_OTEL_FLUSH_TIMEOUT).
        self._failing = False
        self._redactor = Redactor(settings.redact_patterns)
        self._metric_attributes: dict[tuple[Any, ...], tuple[dict[str, Any], ...]] = {}
        self._checked = False  # the endpoint check runs once per pipeline
        self._announced: set[str] = set()  # causes said while running (once each)
        self._spans_cause: Cause | None = None  # the last one said about spans
        self._closing = False  # set once close() has flushed: nothing more is announced

        users = users_span_processor() if exporters is None else None
        if users is not None:
            self._processor, global_tp = users
            self._resource = global_tp.resource
            self._sampler = global_tp.sampler
        else:
            spans_out = (exporters[0] if exporters is not None
                         else span_exporter(settings.traces_protocol))
            self._exporters.append(spans_out)
            self._counter = CountingExporter(spans_out, on_failure=self._spans_failed)
            # Each request within what endpoints take by default (counted per request); a file
            # has no such limit.
            batches: SpanExporter = (self._counter if exporters is not None else
                                     SizeBoundSpanExporter(
                                         self._counter, REQUEST_LIMITS[settings.traces_protocol]))
            # A single agent sample can hold thousands of spans: a larger queue than the SDK
            # default (2048) unless the user set OTEL_BSP_MAX_QUEUE_SIZE.
            queue = None if os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") else _QUEUE_SIZE
            delay = None if os.environ.get("OTEL_BSP_SCHEDULE_DELAY") else _SCHEDULE_DELAY_MS
            self._processor = BatchSpanProcessor(batches, max_queue_size=queue,
                                                 schedule_delay_millis=delay)
            self._resource = build_resource(self._redactor)
            self._sampler = sampler_from_env()
            self._owned.append(self._processor)

        self._event_logger = self._make_event_logger(settings)
        self._instruments = self._make_instruments(settings)
        if self._counter is not None:  # our own exporters: their complaints, this pipeline's only
            capture_export_logs()  # once every exporter (and so its logger) exists
            EXPORT_ERRORS.clear()
        atexit.register(self.close)

    # --- set-up -------------------------------------------------------------------------------
    def _make_event_logger(self, settings: Settings) -> Any | None:
        if not settings.logs_enabled:
            return None
        logs_sdk = load_logs_sdk()
        if logs_sdk is None:
            return None
        api, LoggerProvider, BatchLogRecordProcessor = logs_sdk  # noqa: N806 (classes)
        self._info = api.SeverityNumber.INFO
        provider: Any = api.get_logger_provider()
        if not isinstance(provider, LoggerProvider) or self._file_exporters is not None:
            # shutdown_on_exit=False: the SDK's own exit hook would wait the full export timeout
            # on a dead endpoint; close() flushes with a bounded wait instead.
            provider = LoggerProvider(resource=self._resource, shutdown_on_exit=False)
            if self._file_exporters is not None:
                logs_out = records = self._file_exporters[1]
            else:
                logs_out = log_exporter(settings.logs_protocol)
                records = SizeBoundLogExporter(logs_out, REQUEST_LIMITS[settings.logs_protocol])
            self._exporters.append(logs_out)
            provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    records,
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
            metrics_out = metric_exporter(settings.metrics_protocol)
            self._exporters.append(metrics_out)
            reader = PeriodicExportingMetricReader(metrics_out)
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
        exported = self._counter.exported if self._counter else submitted
        lost = submitted - exported if self._counter else 0
        # What was said while running, else the complaints' words: no look at the endpoint here,
        # which would add to the run end's wait.
        cause = (self._spans_cause or diagnose(EXPORT_ERRORS.recent(SPANS),
                                               traces_url(self.settings))) if lost > 0 else None
        report = FlushReport(
            completed=completed,
            submitted=submitted,
            exported=exported,
            counted=self._counter is not None,
            problem=self._in_words(cause) if cause is not None else None,
        )
        self._failing = self._failing or not completed or report.lost > 0
        return report

    def _cause_of_failure(self) -> Cause | None:
        """Why spans were not confirmed (``diagnose``). An OTLP/HTTP request to a gRPC port goes
        unanswered like a hung server, and the SDK's retries can end "due to timeout" before
        naming a refused connection: a timeout is told apart by one bounded look at the
        endpoint."""
        cause = diagnose(EXPORT_ERRORS.recent(SPANS), traces_url(self.settings))
        if cause is None or cause.kind == TIMEOUT:
            cause = cause_of_silence(traces_url(self.settings), self.settings) or cause
        return cause

    def _in_words(self, cause: Cause, cli: bool = False) -> str:
        fix = advice(cause, self.settings, cli=cli)
        return f"{cause.text}; {fix}" if fix else cause.text

    def failure_cause(self) -> str | None:
        """Why spans were not confirmed and what to do, in ``inspect-otel export``'s terms."""
        cause = self._cause_of_failure()
        return self._in_words(cause, cli=True) if cause is not None else None

    # --- problems said as they happen -----------------------------------------------------------
    def check_endpoint(self) -> None:
        """Check the endpoint once, off the caller's thread (``_start_check``): a problem is said
        at once, not at the end of the run. Only for the pipeline's own OTLP exporter."""
        if self._checked or self._counter is None or self._file_exporters is not None:
            return
        self._checked = True
        threading.Thread(target=self._check, name="inspect-otel-endpoint-check",
                         daemon=True).start()

    def _check(self) -> None:
        from ._start_check import check_endpoint

        try:
            cause = check_endpoint(self.settings)
        except Exception:  # noqa: BLE001 - a check that fails says nothing: the run's exports will
            _logger.debug("endpoint check failed", exc_info=True)
            return
        if cause is not None:
            self._announce(cause)

    def _spans_failed(self) -> None:
        """A span batch was not confirmed (the exporter's thread): its cause is said once."""
        cause = self._cause_of_failure()
        if cause is not None:
            self._announce(cause)

    def _announce(self, cause: Cause) -> None:
        with self._lock:
            self._spans_cause = cause  # kept when closing too: a replay's summary names it
            if self._closing or cause.text in self._announced:
                return
            self._announced.add(cause.text)
        _logger.warning("inspect-otel: spans are not reaching the OTLP endpoint: %s. The eval "
                        "goes on; its end counts the spans lost and gives the command that sends "
                        "them again.", self._in_words(cause))

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
        # What fails from here on was counted by the flush above: "the eval goes on" would be
        # wrong, and a shutdown thread that outlives the join must not speak into the next run.
        self._closing = True

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
