"""No OTLP request larger than an endpoint takes by default: a batch is split by encoded size, and
a span that alone is too large has its largest strings cut, each with a marker.

The SDK's batch processors cut batches by count (512), not size. With content capture and the
provider's raw call, 512 spans can carry a hundred megabytes; an endpoint rejects such a request
whole (413, gRPC RESOURCE_EXHAUSTED, or the SDK's own 64 MiB cap drops it before sending). The
size of each span's share of the request is bounded from above without encoding it (the SDK
encodes each request once, as always): its strings' UTF-8 lengths plus protobuf's tags and
length prefixes at their largest. Tests hold the bound against the SDK's encoder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..config import Protocol
from ..content import TRUNCATION_MARKER, truncate_json

_logger = logging.getLogger(__name__)

# The largest request (protobuf bytes before compression) each protocol's endpoints take by
# default; the smallest of:
# - OTLP/HTTP: the OpenTelemetry Collector's OTLP receiver, 20 MiB (confighttp
#   max_request_body_size); the inspect-otel receiver takes 32 MiB (--max-body-mb), the Python
#   SDK's HTTP exporter sends up to 64 MiB (max_request_size).
# - OTLP/gRPC: 4 MiB, gRPC's default max receive message size (the Collector's
#   max_recv_msg_size_mib default, a plain grpc server's); the inspect-otel receiver takes 32 MiB.
REQUEST_LIMITS: Mapping[Protocol, int] = {Protocol.HTTP_PROTOBUF: 20 << 20, Protocol.GRPC: 4 << 20}

# Protobuf's framing at its largest: a field's tag (2 bytes up to field 2047) and a length prefix
# (5 bytes up to 32 GiB) around each message and string.
_FIELD = 7
_KEY_VALUE = 3 * _FIELD  # the KeyValue in its list, its key, its AnyValue
_SCALAR = 11  # an AnyValue holding a bool, an int (varint, 10 bytes) or a double
_SPAN = 12 * _FIELD + 16 + 8 + 8 + 2 * 9 + 4  # fields, ids (trace, span, parent), times, flags
_EVENT = 4 * _FIELD + 9
_LINK = 5 * _FIELD + 16 + 8 + 4
_GROUP = 8 * _FIELD  # a ResourceSpans and its ScopeSpans: their fields but the attributes
_CUT_ROUNDS = 4  # attempts to fit one span, each cutting deeper


def utf8_size(text: str) -> int:
    # isascii is a flag test in CPython: the common case costs no pass over the string.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return _FIELD + utf8_size(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return _SCALAR
    if isinstance(value, bytes):
        return _FIELD + len(value)
    if isinstance(value, Mapping):
        return _FIELD + attributes_size(value)
    if isinstance(value, Sequence):
        return _FIELD + sum(_FIELD + _value_size(item) for item in value)
    return _FIELD + utf8_size(str(value))  # the SDK refuses it (and logs): an upper bound anyway


def attributes_size(attributes: Mapping[str, Any] | None) -> int:
    if not attributes:
        return 0
    size = (_KEY_VALUE + _FIELD) * len(attributes)
    for key, value in attributes.items():  # the export thread's loop: str values inline
        size += len(key) if key.isascii() else utf8_size(str(key))
        if type(value) is str:
            size += len(value) if value.isascii() else utf8_size(value)
        else:
            size += _value_size(value) - _FIELD
    return size


def _state_size(context: Any) -> int:
    state = getattr(context, "trace_state", None)
    return sum(utf8_size(k) + utf8_size(v) + 2 for k, v in state.items()) if state else 0


def span_size(span: ReadableSpan) -> int:
    """At least the bytes ``span`` adds to an OTLP request (its group's own fields aside)."""
    size = _SPAN + utf8_size(span.name or "") + attributes_size(span.attributes)
    size += _state_size(span.get_span_context())
    status = span.status
    if status is not None and status.description:
        size += utf8_size(status.description)
    for event in span.events:
        size += _EVENT + utf8_size(event.name) + attributes_size(event.attributes)
    for link in span.links:
        size += _LINK + attributes_size(link.attributes) + _state_size(link.context)
    return size


def group_size(resource: Any, scope: Any) -> int:
    """At least the bytes of the ResourceSpans / ScopeSpans that hold spans of ``resource`` and
    ``scope`` (one per such pair in a request)."""
    size = _GROUP + attributes_size(getattr(resource, "attributes", None))
    size += utf8_size(getattr(resource, "schema_url", "") or "")
    if scope is not None:
        size += attributes_size(getattr(scope, "attributes", None))
        for text in (scope.name, scope.version, scope.schema_url):
            size += utf8_size(text or "")
    return size


T = TypeVar("T")


def split_by_size(items: Sequence[T], limit: int, size_of: Callable[[T], int],
                  group_of: Callable[[T], Any], group_size_of: Callable[[T], int]
                  ) -> list[list[T]]:
    """``items`` in order, in chunks whose sizes (each item's ``size_of``, plus
    ``group_size_of`` once per distinct ``group_of`` key in the chunk) stay within ``limit``.
    An item too large for any chunk gets one of its own."""
    group_sizes: dict[Any, int] = {}
    chunks: list[list[T]] = []
    chunk: list[T] = []
    groups: set[Any] = set()
    total = 0
    for item in items:
        key = group_of(item)
        overhead = group_sizes.get(key)
        if overhead is None:
            overhead = group_sizes[key] = group_size_of(item)
        size = size_of(item)
        if chunk and total + size + (0 if key in groups else overhead) > limit:
            chunks.append(chunk)
            chunk, groups, total = [], set(), 0
        if key not in groups:
            groups.add(key)
            total += overhead
        chunk.append(item)
        total += size
    if chunk:
        chunks.append(chunk)
    return chunks


# --- one span too large --------------------------------------------------------------------------
def _cut_text(text: str, size: int) -> str:
    """``text`` in at most about ``size`` UTF-8 bytes, with the content policy's marker; a JSON
    object or list stays valid JSON (its strings are cut inside)."""
    if utf8_size(text) <= size:
        return text
    if text[:1] in "[{":
        try:
            return truncate_json(json.loads(text), size)
        except ValueError:
            pass
    keep = max(size - len(TRUNCATION_MARKER.format(n=len(text))), 0)
    head = text.encode("utf-8", "surrogatepass")[:keep].decode("utf-8", "ignore")
    return head + TRUNCATION_MARKER.format(n=len(text) - len(head))


def _water_level(sizes: list[int], excess: int) -> int:
    """The largest cap such that cutting every size above it to it saves ``excess``."""
    ordered = sorted(sizes, reverse=True)
    saved, level = 0, ordered[0] if ordered else 0
    for i, size in enumerate(ordered):
        following = ordered[i + 1] if i + 1 < len(ordered) else 0
        step = (size - following) * (i + 1)
        if saved + step >= excess:
            return max(size - (excess - saved + i) // (i + 1), 0)
        saved += step
        level = following
    return level


def fit_span(span: ReadableSpan, budget: int) -> ReadableSpan:
    """``span`` within ``budget`` bytes: its largest string attributes (its own and its events')
    cut first, each with a marker. Identity, times, status and links stay as they were."""
    fitted = span
    for attempt in range(_CUT_ROUNDS):
        excess = span_size(fitted) - budget
        if excess <= 0:
            return fitted
        strings = [v for attrs in (fitted.attributes, *(e.attributes for e in fitted.events))
                   for v in (attrs or {}).values() if isinstance(v, str)]
        if not strings:
            break
        # Markers and JSON's escapes take room too: aim lower on each round.
        cap = max(_water_level([utf8_size(s) for s in strings], excess) >> attempt, 64)
        fitted = _with_strings_cut(fitted, cap)
    return fitted


def _cut_attributes(attributes: Mapping[str, Any] | None, cap: int) -> dict[str, Any]:
    return {k: _cut_text(v, cap) if isinstance(v, str) else v
            for k, v in (attributes or {}).items()}


def _with_strings_cut(span: ReadableSpan, cap: int) -> ReadableSpan:
    return ReadableSpan(
        name=span.name, context=span.get_span_context(), parent=span.parent,
        resource=span.resource, attributes=_cut_attributes(span.attributes, cap),
        events=[Event(e.name, _cut_attributes(e.attributes, cap), e.timestamp)
                for e in span.events],
        links=span.links, kind=span.kind, status=span.status, start_time=span.start_time,
        end_time=span.end_time, instrumentation_scope=span.instrumentation_scope,
    )


# --- the exporters --------------------------------------------------------------------------------
def _span_group(span: ReadableSpan) -> Any:
    return id(span.resource), id(span.instrumentation_scope)


def _span_group_size(span: ReadableSpan) -> int:
    return group_size(span.resource, span.instrumentation_scope)


class SizeBoundSpanExporter(SpanExporter):
    """Hands ``inner`` the batch in requests of at most ``limit`` bytes; a span too large alone is
    cut to fit (said once). A request not confirmed ends the batch: the rest would wait out the
    same failure, and the pipeline counts them as not confirmed."""

    def __init__(self, inner: SpanExporter, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._cut_said = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for chunk in split_by_size(spans, self._limit, span_size, _span_group,
                                   _span_group_size):
            if len(chunk) == 1:
                chunk = [self._fitted(chunk[0])]
            if self._inner.export(chunk) is not SpanExportResult.SUCCESS:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _fitted(self, span: ReadableSpan) -> ReadableSpan:
        budget = self._limit - _span_group_size(span)
        if span_size(span) <= budget:
            return span
        fitted = fit_span(span, budget)
        if not self._cut_said:
            self._cut_said = True
            _logger.warning("inspect-otel: a span larger than an OTLP request may be (%d bytes) "
                            "had its largest attributes cut to fit, each with a marker (%r); "
                            "INSPECT_OTEL_MAX_ATTRIBUTE_LENGTH keeps attributes smaller",
                            self._limit, span.name)
        return fitted

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def log_record_size(item: Any) -> int:
    """At least the bytes a log record adds to an OTLP request: its attributes and body, plus
    its fields (the SDK's record shape varies by version: read through ``log_record``)."""
    record = getattr(item, "log_record", item)
    size = _SPAN + attributes_size(getattr(record, "attributes", None))
    body = getattr(record, "body", None)
    if body is not None:
        size += _value_size(body)
    return size + utf8_size(getattr(record, "event_name", None) or "")


def _log_resource(item: Any) -> Any:
    return getattr(item, "resource", None) or getattr(
        getattr(item, "log_record", None), "resource", None)


def _log_group(item: Any) -> Any:
    return id(_log_resource(item)), id(getattr(item, "instrumentation_scope", None))


def _log_group_size(item: Any) -> int:
    return group_size(_log_resource(item), getattr(item, "instrumentation_scope", None))


class SizeBoundLogExporter:
    """The log-record counterpart (evaluation results): split only, a record is never cut. Duck
    typed as the SDK's LogRecordExporter, whose module is private (``opentelemetry.sdk._logs``)."""

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    def export(self, batch: Sequence[Any]) -> Any:
        chunks = split_by_size(batch, self._limit, log_record_size, _log_group, _log_group_size)
        if len(chunks) <= 1:
            return self._inner.export(batch)
        for chunk in chunks:
            result = self._inner.export(chunk)
            if getattr(result, "name", None) != "SUCCESS":  # LogRecordExportResult.FAILURE
                return result
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
