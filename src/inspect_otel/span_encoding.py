"""OTLP span encoding for the hook's own exporters: the SDK's message, built in place.

The SDK's ``encode_spans`` builds every span, attribute and value as a protobuf object of its own,
then hands lists of them to the parent's constructor, which copies each one again. For this hook's
spans that is about 28 us per span, the largest single part of the SDK's share of the telemetry's
CPU in a fast eval. Filling the same request in place (``spans.add()``, then each field) takes 11 us
(``bench/span_encoding.py``; docs/benchmarks.md).

The contract is equality with the SDK's own encoder, byte for byte. Tests check it on the spans of
real evals and on every field and value type the SDK encodes. Anything this encoder does not
handle (a value the SDK would refuse and log, an integer outside int64) hands the whole batch to
the SDK's encoder, which then decides exactly as it always did.

The exporters are the SDK's own with only the encoder swapped:

- gRPC: through the exporter's ``_translate_data`` method, the SDK's hook for it.
- HTTP/protobuf: ``export`` has no such hook; it calls the module-level function ``encode_spans``.
  The exporter here runs the SDK's own ``export`` code with that one name bound to this encoder:
  no line of it is copied and no SDK module is patched, so other exporters in the process are
  untouched. An SDK whose ``export`` no longer calls ``encode_spans`` gets its plain exporter.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as sdk_encode_spans,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import SpanFlags
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanKind

from .config import Protocol

_KINDS = {
    SpanKind.INTERNAL: PbSpan.SpanKind.SPAN_KIND_INTERNAL,
    SpanKind.SERVER: PbSpan.SpanKind.SPAN_KIND_SERVER,
    SpanKind.CLIENT: PbSpan.SpanKind.SPAN_KIND_CLIENT,
    SpanKind.PRODUCER: PbSpan.SpanKind.SPAN_KIND_PRODUCER,
    SpanKind.CONSUMER: PbSpan.SpanKind.SPAN_KIND_CONSUMER,
}
_HAS_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


def encode_spans(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The request the SDK's ``encode_spans`` builds for ``spans``, built in place."""
    try:
        return encode_in_place(spans)
    except Exception:  # noqa: BLE001 - a value outside the fast path: the SDK's rules decide
        return sdk_encode_spans(spans)


def encode_in_place(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """Raises on what the SDK's encoder would refuse or log (callers use :func:`encode_spans`)."""
    request = ExportTraceServiceRequest()
    # resource -> (its ResourceSpans, scope -> its ScopeSpans), in order of first appearance,
    # grouped exactly as the SDK groups (by the objects' own equality).
    groups: dict[Any, tuple[Any, dict[Any, Any]]] = {}
    for span in spans:
        resource = span.resource
        group = groups.get(resource)
        if group is None:
            resource_spans = request.resource_spans.add()
            resource_spans.resource.SetInParent()
            _fill_attributes(resource_spans.resource.attributes, resource.attributes)
            if resource.schema_url:
                resource_spans.schema_url = resource.schema_url
            group = groups[resource] = (resource_spans, {})
        scope = span.instrumentation_scope or None
        scope_spans = group[1].get(scope)
        if scope_spans is None:
            scope_spans = group[0].scope_spans.add()
            scope_spans.scope.SetInParent()
            if scope is not None:
                if scope.name:
                    scope_spans.scope.name = scope.name
                if scope.version:
                    scope_spans.scope.version = scope.version
                _fill_attributes(scope_spans.scope.attributes, scope.attributes)
                if scope.schema_url:
                    scope_spans.schema_url = scope.schema_url
            group[1][scope] = scope_spans
        _fill_span(scope_spans.spans.add(), span)
    return request


def _fill_span(out: Any, span: ReadableSpan) -> None:
    context = span.get_span_context()
    out.trace_id = context.trace_id.to_bytes(16, "big")
    out.span_id = context.span_id.to_bytes(8, "big")
    if context.trace_state is not None:
        out.trace_state = ",".join(f"{key}={value}" for key, value in context.trace_state.items())
    parent = span.parent
    if parent:
        out.parent_span_id = parent.span_id.to_bytes(8, "big")
    out.flags = _HAS_IS_REMOTE | _IS_REMOTE if parent and parent.is_remote else _HAS_IS_REMOTE
    out.name = span.name
    out.kind = _KINDS[span.kind]
    if span.start_time is not None:
        out.start_time_unix_nano = span.start_time
    if span.end_time is not None:
        out.end_time_unix_nano = span.end_time
    _fill_attributes(out.attributes, span.attributes)
    for event in span.events:
        pb_event = out.events.add()
        pb_event.name = event.name
        pb_event.time_unix_nano = event.timestamp
        _fill_attributes(pb_event.attributes, event.attributes)
        pb_event.dropped_attributes_count = event.dropped_attributes
    for link in span.links:
        pb_link = out.links.add()
        pb_link.trace_id = link.context.trace_id.to_bytes(16, "big")
        pb_link.span_id = link.context.span_id.to_bytes(8, "big")
        _fill_attributes(pb_link.attributes, link.attributes)
        pb_link.dropped_attributes_count = link.dropped_attributes
        pb_link.flags = _HAS_IS_REMOTE | _IS_REMOTE if link.context.is_remote else _HAS_IS_REMOTE
    status = span.status
    if status is not None:
        out.status.SetInParent()
        out.status.code = status.status_code.value
        if status.description is not None:
            out.status.message = status.description
    out.dropped_attributes_count = span.dropped_attributes
    out.dropped_events_count = span.dropped_events
    out.dropped_links_count = span.dropped_links


def _fill_attributes(out: Any, attributes: Mapping[str, Any] | None) -> None:
    if not attributes:
        return
    for key, value in attributes.items():
        pair = out.add()
        pair.key = key
        _fill_value(pair.value, value)


def _fill_value(out: Any, value: Any) -> None:
    """``value`` into the AnyValue ``out``, as the SDK's ``_encode_value`` would (same order of
    type checks; exact types first, the common case)."""
    kind = type(value)
    if kind is str:
        out.string_value = value
    elif kind is bool:
        out.bool_value = value
    elif kind is int:
        out.int_value = value
    elif kind is float:
        out.double_value = value
    elif value is None:
        out.SetInParent()
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, bytes):
        out.bytes_value = value
    elif isinstance(value, Sequence):
        array = out.array_value
        array.SetInParent()
        for item in value:
            _fill_value(array.values.add(), item)
    elif isinstance(value, Mapping):
        pairs = out.kvlist_value
        pairs.SetInParent()
        for key, item in value.items():
            pair = pairs.values.add()
            pair.key = str(key)
            _fill_value(pair.value, item)
    else:
        raise TypeError(f"no OTLP value for {kind.__name__}")  # the SDK logs and drops it


# --- exporters -----------------------------------------------------------------------------------
def span_exporter(protocol: Protocol) -> SpanExporter:
    """The SDK's OTLP span exporter for ``protocol`` (configured by the standard OTEL_* variables,
    as always), with the in-place encoder."""
    return _grpc_exporter_class()() if protocol is Protocol.GRPC else _http_exporter_class()()


@functools.cache
def _grpc_exporter_class() -> type[SpanExporter]:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    def _translate_data(self: Any, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return encode_spans(data)

    return type("OTLPSpanExporter", (OTLPSpanExporter,),
                {"_translate_data": _translate_data, "__module__": __name__})


@functools.cache
def _http_exporter_class() -> type[SpanExporter]:
    from opentelemetry.exporter.otlp.proto.http import trace_exporter as sdk_module

    base = sdk_module.OTLPSpanExporter
    export = base.export
    code = getattr(export, "__code__", None)
    if code is None or "encode_spans" not in code.co_names or hasattr(export, "__wrapped__"):
        return base
    namespace = dict(vars(sdk_module))  # the SDK module's own names, one of them rebound
    namespace["encode_spans"] = encode_spans
    fast_export = types.FunctionType(code, namespace, export.__name__, export.__defaults__,
                                     export.__closure__)
    fast_export.__kwdefaults__ = export.__kwdefaults__
    fast_export.__qualname__ = export.__qualname__
    fast_export.__doc__ = export.__doc__
    return type("OTLPSpanExporter", (base,), {"export": fast_export, "__module__": __name__})
