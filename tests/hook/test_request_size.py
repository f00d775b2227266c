"""Nothing dropped for size (issue 25): no OTLP request exceeds what endpoints take by default
(OTLP/HTTP 20 MiB, the Collector's; OTLP/gRPC 4 MiB, gRPC's), so a full batch of spans with
100 kB raw provider calls is split rather than lost; a span too large alone has its largest
attributes cut, with a marker. Real evals, the SDK's own encoder as the judge of sizes, real
endpoints (a gRPC server with gRPC's default limit, a real receiver into the real MLflow)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags

from inspect_otel.config import Protocol, load_settings
from inspect_otel.content import TRUNCATION_MARKER
from inspect_otel.export import TelemetryPipeline
from inspect_otel.export._request_size import (
    REQUEST_LIMITS,
    SizeBoundSpanExporter,
    group_size,
    span_size,
    split_by_size,
)
from inspect_otel.replay import export_logs
from tests.support.capture import CapturedRun, capture, hook_env
from tests.support.evals import run_large_calls
from tests.support.otlp_sink import GrpcSink
from tests.support.pipeline import pipeline_spans
from tests.support.wait import wait_for

HTTP_LIMIT, GRPC_LIMIT = REQUEST_LIMITS[Protocol.HTTP_PROTOBUF], REQUEST_LIMITS[Protocol.GRPC]
RECEIVER_LIMIT = 32 << 20  # the receiver's --max-body-mb default
SAMPLES, CALLS = 64, 2  # 8 spans a sample: 512 spans, a full batch, of about 45 MB
# Content on spans and the provider's raw call, each attribute whole up to 200 000 characters.
LARGE = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY",
         "INSPECT_OTEL_CAPTURE_PROVIDER_CALL": "true",
         "INSPECT_OTEL_MAX_ATTRIBUTE_LENGTH": "200000"}
# Spans leave only in full batches of 512 (and at the end, or a replay's drain every 512 spans),
# not every 500 ms: mapping 100 kB attributes is slow enough that smaller batches would go first.
FULL_BATCHES = {"OTEL_BSP_SCHEDULE_DELAY": "600000"}


@pytest.fixture(scope="module")
def large_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapturedRun]:
    """The eval, live, to an OTLP/HTTP sink; spans leave only in full batches (and at the end)."""
    yield from capture(tmp_path_factory.mktemp("large"), {**LARGE, **FULL_BATCHES},
                       run=run_large_calls, samples=SAMPLES, calls=CALLS)


@pytest.fixture(scope="module")
def replayed(large_run: CapturedRun) -> list[ReadableSpan]:
    """The same spans as the SDK objects the pipeline hands its exporter (replay = live)."""
    with pytest.MonkeyPatch.context() as mp:
        hook_env(mp, "http://127.0.0.1:9", LARGE)
        return pipeline_spans(large_run.log.location)


def _encoded(spans: list[ReadableSpan]) -> int:
    return len(encode_spans(spans).SerializeToString())


def test_a_full_batch_is_beyond_every_limit(replayed):
    """The input is what the issue describes: a full batch of 512 spans is larger than the
    receiver takes, so sent whole it would be lost."""
    assert len(replayed) >= 512
    assert any(len(s.attributes.get("inspect.model.call.request", "")) > 100_000
               for s in replayed)
    assert _encoded(replayed[:512]) > RECEIVER_LIMIT


def test_the_size_bound_is_an_upper_bound_and_a_close_one(replayed, content_run, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_AND_EVENT")
    everyday = pipeline_spans(content_run.log.location)  # errors, events, links, retries, tools
    assert everyday and replayed
    for spans in (everyday, replayed):
        group = group_size(spans[0].resource, spans[0].instrumentation_scope)
        for span in spans:
            assert span_size(span) + group >= _encoded([span]), span.name
    large = [s for s in replayed if _encoded([s]) > 100_000]
    assert large and all(span_size(s) < 1.05 * _encoded([s]) for s in large)


def test_split_requests_are_within_the_limit_in_order(replayed):
    limit = GRPC_LIMIT
    chunks = split_by_size(replayed, limit, span_size,
                           lambda s: id(s.resource),
                           lambda s: group_size(s.resource, s.instrumentation_scope))
    assert len(chunks) > 1 and [s for chunk in chunks for s in chunk] == replayed
    assert all(_encoded(chunk) <= limit for chunk in chunks)


def test_live_full_batches_leave_in_requests_within_the_http_limit(large_run, replayed):
    bodies = large_run.sink.bodies  # every request, of every signal
    assert bodies and max(map(len, bodies)) <= HTTP_LIMIT
    requests = {s.arrived_ns for s in large_run.sink.spans}  # one arrival time per request
    assert len(requests) >= 3  # the full batch of ~45 MB alone needs three
    live = {s.span_id: s for s in large_run.sink.spans}
    assert len(live) == len(large_run.sink.spans)  # each span once
    missing = {format(s.context.span_id, "016x") for s in replayed} - set(live)
    assert not missing  # every span the log maps to (the run span is live only)
    assert [s.attributes["inspect.span.kind"] for i, s in live.items()
            if i not in {format(r.context.span_id, "016x") for r in replayed}] == ["run"]


def test_grpcs_default_limit_is_kept(large_run, monkeypatch):
    """A gRPC server with gRPC's default limit (4 MiB) takes every request of the replay."""
    sink = GrpcSink()
    try:
        hook_env(monkeypatch, sink.endpoint,
                 {**LARGE, **FULL_BATCHES, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
        summary = export_logs([large_run.log.location])
    finally:
        sink.stop()
    assert summary.ok and summary.lost_spans == 0, summary.cause
    assert {s.span_id for s in sink.sink.spans} == {s.span_id for s in large_run.sink.spans}


def _landed_in_mlflow(client: Any, experiment: str) -> list[Any]:
    """Every sample's trace in MLflow, once the receiver wrote them all."""
    exp_id = client.get_experiment_by_name(experiment).experiment_id

    def traces() -> list[Any]:
        return client.search_traces(locations=[exp_id],
                                    filter_string="tags.`inspect.span.kind` = 'sample'",
                                    max_results=SAMPLES + 10)
    return wait_for(lambda: t if len(t := traces()) == SAMPLES else None, 120,
                    what="every sample's trace in MLflow")


def _assert_every_span_landed(found: list[Any], sent: set[str]) -> None:
    landed = {span.span_id for trace in found for span in trace.data.spans}
    assert sent and landed == sent
    chats = [span for trace in found for span in trace.data.spans if span.name.startswith("chat ")]
    assert len(chats) == SAMPLES * CALLS
    assert all(len(str(s.attributes["inspect.model.call.request"])) > 100_000 for s in chats)


def test_replayed_over_http_every_span_lands_in_the_receiver_and_in_mlflow(
        large_run, mlflow_server, mlflow_client, receiver_factory, monkeypatch):
    receiver = receiver_factory(mlflow_server.url, "request-size-http", settle=0.5)
    hook_env(monkeypatch, receiver.url, {**LARGE, **FULL_BATCHES})
    summary = export_logs([large_run.log.location])
    assert summary.ok and summary.lost_spans == 0, summary.cause
    receiver.wait_idle(300)
    found = _landed_in_mlflow(mlflow_client, "request-size-http")
    sample_traces = {root.trace_id for root in large_run.roots()}
    _assert_every_span_landed(found, {s.span_id for s in large_run.sink.spans
                                      if s.trace_id in sample_traces})


def test_live_over_grpc_every_span_lands_in_the_receiver_and_in_mlflow(
        tmp_path, mlflow_server, mlflow_client, receiver_factory, monkeypatch):
    """Another eval (MLflow's trace ids are global: the same log twice would collapse), live,
    straight to the receiver's gRPC port in full batches."""
    receiver = receiver_factory(mlflow_server.url, "request-size-grpc", settle=0.5)
    hook_env(monkeypatch, f"http://127.0.0.1:{receiver.grpc_port}",
             {**LARGE, **FULL_BATCHES, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
              "INSPECT_OTEL_FLUSH_TIMEOUT": "120"})
    log = run_large_calls(tmp_path, samples=SAMPLES, calls=CALLS)
    assert log.status == "success"
    receiver.wait_idle(300)
    found = _landed_in_mlflow(mlflow_client, "request-size-grpc")
    spans = pipeline_spans(log.location)  # what the eval mapped to (replay = live)
    sample_traces = {s.context.trace_id for s in spans
                     if s.attributes.get("inspect.span.kind") == "sample"}
    _assert_every_span_landed(found, {format(s.context.span_id, "016x") for s in spans
                                      if s.context.trace_id in sample_traces})


# --- one span larger than a request may be --------------------------------------------------------
def _huge_span() -> ReadableSpan:
    context = SpanContext(0xABC, 0x1, is_remote=False, trace_flags=TraceFlags(1))
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "m" * 300_000}]}])
    return ReadableSpan(
        name="chat model", context=context, resource=Resource({"service.name": "t"}),
        instrumentation_scope=InstrumentationScope("inspect_otel", "1"),
        attributes={"gen_ai.input.messages": messages, "inspect.model.call.request": "r" * 200_000,
                    "small": "stays", "gen_ai.request.model": "model"},
        events=[Event("gen_ai.evaluation.result", {"explanation": "e" * 100_000}, 5)],
        start_time=1, end_time=2)


def test_a_span_too_large_alone_is_cut_to_fit_with_markers(caplog):
    memory = InMemorySpanExporter()
    limit = 128 << 10
    exporter = SizeBoundSpanExporter(memory, limit)
    big = _huge_span()
    assert _encoded([big]) > 4 * limit
    with caplog.at_level(logging.WARNING, logger="inspect_otel"):
        assert exporter.export([big]) is SpanExportResult.SUCCESS
        assert exporter.export([big]) is SpanExportResult.SUCCESS
    sent = memory.get_finished_spans()
    assert len(sent) == 2 and all(_encoded([s]) <= limit for s in sent)
    cut = sent[0]
    assert cut.context == big.context and cut.name == big.name
    assert cut.attributes["small"] == "stays" and cut.attributes["gen_ai.request.model"] == "model"
    marker = TRUNCATION_MARKER.split("{")[0]
    assert marker in cut.attributes["inspect.model.call.request"]
    assert marker in cut.events[0].attributes["explanation"]
    json.loads(cut.attributes["gen_ai.input.messages"])  # still JSON
    assert marker in cut.attributes["gen_ai.input.messages"]
    said = [r for r in caplog.records if "had its largest attributes cut" in r.getMessage()]
    assert len(said) == 1  # once, not per span


def test_evaluation_results_are_split_too(monkeypatch):
    """300 log records of 30 kB each (9 MB) to a gRPC server with gRPC's default limit: all
    arrive."""
    from inspect_otel.mapping import EvaluationResult

    sink = GrpcSink()
    try:
        hook_env(monkeypatch, sink.endpoint, {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                                              "OTEL_METRICS_EXPORTER": "none",
                                              "OTEL_BLRP_SCHEDULE_DELAY": "600000"})
        pipeline = TelemetryPipeline(load_settings())
        pipeline.emit_results([
            EvaluationResult(0xABC, 1, 1_000 + i, {"gen_ai.evaluation.name": f"r{i}",
                                                    "gen_ai.evaluation.explanation": "x" * 30_000})
            for i in range(300)])
        assert pipeline.flush(30).completed
        pipeline.close()
        assert sink.sink.wait_for(lambda s: len(s.logs) == 300, timeout=30)
    finally:
        sink.stop()
    assert sorted(r.attributes["gen_ai.evaluation.name"] for r in sink.sink.logs) == sorted(
        f"r{i}" for i in range(300))
