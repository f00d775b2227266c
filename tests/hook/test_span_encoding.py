"""The in-place OTLP span encoder against its reference, the SDK's own ``encode_spans``: byte for
byte on the spans of real evals (replayed through the real pipeline) and on every field and value
type the SDK encodes; and the exporters that carry it are the SDK's own, encoder aside."""

from __future__ import annotations

import enum
import logging
import subprocess
import sys

import pytest
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as sdk_encode_spans,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

from inspect_otel import span_encoding
from inspect_otel.config import Protocol, load_settings
from inspect_otel.export import TelemetryPipeline
from inspect_otel.span_encoding import encode_in_place, encode_spans, span_exporter
from tests.support.pipeline import pipeline_spans

TRACE = 0x0AF7651916CD43DD8448EB211C80319C
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _same_bytes(spans: list[ReadableSpan]) -> bool:
    return (encode_spans(spans).SerializeToString(deterministic=True)
            == sdk_encode_spans(spans).SerializeToString(deterministic=True))


@pytest.mark.parametrize("env", [{}, {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT":
                                      "SPAN_AND_EVENT"}], ids=["private", "content"])
def test_real_eval_spans_encode_to_the_sdks_bytes(content_run, monkeypatch, env):
    """The calculator eval (errors, retries, tools, a judge, 2 epochs), with and without content:
    the in-place encoder takes every span (no fallback) and writes the SDK's bytes, in batches of
    every size the batch processor could cut."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spans = pipeline_spans(content_run.log.location)
    assert len(spans) > 50
    assert {s.kind for s in spans} == {SpanKind.INTERNAL, SpanKind.CLIENT}
    assert any(s.events for s in spans) and any(s.links for s in spans)
    assert any(s.status.status_code is StatusCode.ERROR for s in spans)
    for size in (1, 7, 512):
        for start in range(0, len(spans), size):
            batch = spans[start:start + size]
            assert (encode_in_place(batch).SerializeToString(deterministic=True)
                    == sdk_encode_spans(batch).SerializeToString(deterministic=True))


class _Colour(str, enum.Enum):
    RED = "red"


class _Level(enum.IntEnum):
    HIGH = 3


def _span(name: str, **kwargs) -> ReadableSpan:
    kwargs.setdefault("context", SpanContext(TRACE, 0x1, is_remote=False, trace_flags=SAMPLED))
    kwargs.setdefault("resource", Resource({"service.name": "svc"}))
    kwargs.setdefault("instrumentation_scope", InstrumentationScope("inspect_otel", "1.0"))
    kwargs.setdefault("start_time", 1_700_000_000_000_000_000)
    kwargs.setdefault("end_time", 1_700_000_000_500_000_000)
    return ReadableSpan(name=name, **kwargs)


def _every_field_and_value() -> list[ReadableSpan]:
    remote_parent = SpanContext(TRACE, 0x2, is_remote=True, trace_flags=SAMPLED)
    local_parent = SpanContext(TRACE, 0x3, is_remote=False, trace_flags=SAMPLED)
    state = TraceState([("vendor", "v1"), ("other", "x-y")])
    other_resource = Resource({"service.name": "other", "host.id": 7}, "https://schema/r")
    scoped = InstrumentationScope("scoped", None, "https://schema/s", {"scope.attr": "yes"})
    values = {
        "str": "text", "empty": "", "unicode": "päß ✓", "true": True, "false": False,
        "zero": 0, "negative": -5, "int64 max": 2**63 - 1, "float": 1.5, "nan-free": -0.0,
        "bytes": b"\x00\x01", "strs": ("a", "b"), "bools": (True, False), "ints": (1, 2),
        "floats": (0.5,), "empty tuple": (), "list": ["x", "y"], "none in array": ("a", None),
        "mapping": {"k": {"j": [1, "two"]}, 3: "int key"}, "none": None,
        "str enum": _Colour.RED, "int enum": _Level.HIGH,
    }
    return [
        _span("every value", attributes=values, kind=SpanKind.CLIENT, parent=local_parent),
        _span("remote parent, trace state",
              context=SpanContext(TRACE, 0x4, is_remote=False, trace_flags=SAMPLED,
                                  trace_state=state),
              parent=remote_parent, kind=SpanKind.SERVER,
              status=Status(StatusCode.ERROR, "boom: it broke")),
        _span("events and links", kind=SpanKind.PRODUCER, status=Status(StatusCode.OK),
              events=[Event("with attributes", {"a": 1, "b": ("x",)}, 123),
                      Event("bare", None, 456),
                      Event("dropped", BoundedAttributes(1, {"a": 1, "b": 2}), 789)],
              links=[Link(SpanContext(TRACE, 0x9, is_remote=True, trace_flags=SAMPLED,
                                      trace_state=state), {"link.kind": "task"}),
                     Link(SpanContext(0x1234, 0x8, is_remote=False, trace_flags=SAMPLED))]),
        _span("dropped attributes, no end", kind=SpanKind.CONSUMER, end_time=None,
              attributes=BoundedAttributes(2, {"a": 1, "b": 2, "c": 3, "d": 4})),
        _span("another resource and scope", resource=other_resource,
              instrumentation_scope=scoped, status=Status(StatusCode.ERROR)),
        _span("no scope", resource=other_resource, instrumentation_scope=None),
        _span("back to the first group"),
    ]


def test_every_field_and_value_type_encodes_to_the_sdks_bytes():
    spans = _every_field_and_value()
    encode_in_place(spans)  # the fast path takes all of it (raises otherwise)
    assert _same_bytes(spans)
    for span in spans:
        assert _same_bytes([span])
    assert len(encode_spans(spans).resource_spans) == 2


@pytest.mark.parametrize("value", [object(), 2**70, ("mixed", object())],
                         ids=["not a value", "beyond int64", "array with a non-value"])
def test_what_the_sdk_refuses_it_refuses_the_same_way(value, caplog):
    """A value outside OTLP: the whole batch goes to the SDK's encoder, which logs the key and
    drops it; the other attributes and spans stay."""
    spans = [_span("first", attributes={"good": "kept", "bad": value}), _span("second")]
    with pytest.raises((TypeError, ValueError)):
        encode_in_place(spans)
    with caplog.at_level(logging.ERROR):
        request = encode_spans(spans)
    assert "Failed to encode key bad" in caplog.text
    assert _same_bytes(spans)
    encoded = request.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in encoded] == ["first", "second"]
    assert [kv.key for kv in encoded[0].attributes] == ["good"]


def test_the_exporters_are_the_sdks_with_only_the_encoder_swapped():
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as SdkGrpcExporter,
    )
    from opentelemetry.exporter.otlp.proto.http import trace_exporter as sdk_http

    http = span_exporter(Protocol.HTTP_PROTOBUF)
    assert isinstance(http, sdk_http.OTLPSpanExporter)
    assert type(http).export.__code__ is sdk_http.OTLPSpanExporter.export.__code__
    assert type(http).export.__globals__["encode_spans"] is span_encoding.encode_spans
    # the SDK's module is untouched: any other exporter in the process encodes as before
    assert sdk_http.encode_spans is sdk_encode_spans
    assert sdk_http.OTLPSpanExporter.export.__globals__["encode_spans"] is sdk_encode_spans

    grpc = span_exporter(Protocol.GRPC)
    assert isinstance(grpc, SdkGrpcExporter)
    spans = _every_field_and_value()
    assert (grpc._translate_data(spans).SerializeToString(deterministic=True)
            == sdk_encode_spans(spans).SerializeToString(deterministic=True))
    http.shutdown()
    grpc.shutdown()


def test_the_hooks_pipeline_exports_with_it(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
    pipeline = TelemetryPipeline(load_settings())
    try:
        assert type(pipeline._exporters[0]) is span_encoding._http_exporter_class()
    finally:
        pipeline.close()


def test_the_hook_loads_no_exporter_until_it_is_on():
    """Inspect imports the hook's entry point in every eval process, with the hook on or off: the
    OTLP exporters, protobuf and requests load only when a pipeline is built."""
    script = ("import sys, inspect_otel._registry; "
              "print(sorted(m for m in ('google.protobuf', 'requests', 'inspect_otel.span_encoding',"
              " 'opentelemetry.exporter.otlp.proto.http') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
