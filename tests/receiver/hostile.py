"""Hostile OTLP for receiver tests: malformed bodies, valid OTLP with values the receiver must
refuse one span at a time, overwrites and orphaned results. Shared by test_hostile.py (in process)
and test_fuzz.py (a real receiver process)."""

from __future__ import annotations

import random
import re
from typing import Any

from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from inspect_otel import semconv as sc
from inspect_otel.receiver import _values
from tests.receiver.synth import SynthEval, kv

# Text of python exceptions and internals that must never reach a client.
INTERNAL = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception)\b|object has no attribute|"
                      r"not iterable|recursion|sqlite|overflow")


def span_json(value: str) -> bytes:
    """An OTLP/JSON traces body with one span whose attribute value is ``value`` (raw JSON)."""
    return ('{"resourceSpans":[{"scopeSpans":[{"scope":{"name":"inspect_ai"},"spans":[{'
            '"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",'
            '"name":"x","attributes":[{"key":"inspect.x","value":%s}]}]}]}]}' % value).encode()


def nested_json_value(kind: str, depth: int) -> str:
    """An OTLP/JSON AnyValue nesting ``depth`` kvlists ("kv") or arrays ("arr")."""
    head = {"kv": '{"kvlistValue":{"values":[{"key":"k","value":',
            "arr": '{"arrayValue":{"values":['}[kind]
    tail = {"kv": "}]}}", "arr": "]}}"}[kind]
    return head * depth + '{"stringValue":"x"}' + tail * depth


def nested_protobuf_body(depth: int) -> bytes:
    """A binary traces request whose one attribute nests ``depth`` arrays, written by hand
    (protobuf's own serializer would refuse to build it)."""
    def ld(field: int, payload: bytes) -> bytes:
        n, size = len(payload), b""
        while True:
            b, n = n & 0x7F, n >> 7
            size += bytes([b | (0x80 if n else 0)])
            if not n:
                return bytes([field << 3 | 2]) + size + payload
    value = ld(1, b"x")  # AnyValue.string_value
    for _ in range(depth):
        value = ld(5, ld(1, value))  # AnyValue.array_value -> ArrayValue.values
    span = ld(1, b"\1" * 16) + ld(2, b"\2" * 8) + ld(9, ld(1, b"k") + ld(2, value))
    return ld(1, ld(2, ld(2, span)))  # request.resource_spans -> scope_spans -> spans


def deep_value(depth: int) -> common_pb2.AnyValue:
    v = common_pb2.AnyValue(string_value="x")
    for _ in range(depth):
        w = common_pb2.AnyValue()
        w.kvlist_value.values.add(key="k").value.CopyFrom(v)
        v = w
    return v


def list_value(*items: str) -> common_pb2.AnyValue:
    v = common_pb2.AnyValue()
    for item in items:
        v.array_value.values.add(string_value=item)
    return v


def deep_json(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def sample_root(ev: SynthEval, idx: int = 0) -> trace_pb2.Span:
    roots = [s for s in ev.spans() if not s.parent_span_id
             and any(a.key == sc.INSPECT_SPAN_KIND and a.value.string_value == sc.SPAN_KIND_SAMPLE
                     for a in s.attributes)]
    return roots[idx]


def task_span(ev: SynthEval) -> trace_pb2.Span:
    return next(s for s in ev.spans()
                if any(a.key == sc.INSPECT_SPAN_KIND and a.value.string_value == sc.SPAN_KIND_TASK
                       for a in s.attributes))


def with_attrs(span: trace_pb2.Span, changes: dict[str, Any], new_id: bool = True
               ) -> trace_pb2.Span:
    """A copy of ``span`` with attributes (or the start/end time fields) replaced; values are
    AnyValue messages or python values. ``new_id``: a span id derived from the changes."""
    out = trace_pb2.Span()
    out.CopyFrom(span)
    if new_id:
        out.span_id = random.Random(repr(sorted(changes.items(), key=str))).randbytes(8)
    for key, value in changes.items():
        if key in ("start_time_unix_nano", "end_time_unix_nano"):
            setattr(out, key, value)
            continue
        for a in out.attributes:
            if a.key == key:
                break
        else:
            a = out.attributes.add(key=key)
        a.value.CopyFrom(value if isinstance(value, common_pb2.AnyValue) else kv(key, value).value)
    return out


# Sample-root changes the receiver must refuse (span alone), and a word its message contains.
BAD_SPANS: dict[str, tuple[dict[str, Any], str]] = {
    "ordinal_double_1e19": ({sc.INSPECT_SAMPLE_ORDINAL: 1e19}, sc.INSPECT_SAMPLE_ORDINAL),
    "ordinal_string_1e30": ({sc.INSPECT_SAMPLE_ORDINAL: "1e30"}, sc.INSPECT_SAMPLE_ORDINAL),
    "epoch_double_2e63": ({sc.INSPECT_SAMPLE_EPOCH: 2.0 ** 63}, sc.INSPECT_SAMPLE_EPOCH),
    "epoch_string": ({sc.INSPECT_SAMPLE_EPOCH: "first"}, sc.INSPECT_SAMPLE_EPOCH),
    "epoch_list": ({sc.INSPECT_SAMPLE_EPOCH: list_value("1")}, sc.INSPECT_SAMPLE_EPOCH),
    "index_bool": ({sc.INSPECT_SAMPLE_INDEX: True}, sc.INSPECT_SAMPLE_INDEX),
    "eval_id_list": ({sc.INSPECT_EVAL_ID: list_value("a", "b")}, sc.INSPECT_EVAL_ID),
    "run_id_long": ({sc.INSPECT_RUN_ID: "r" * 1000}, sc.INSPECT_RUN_ID),
    # a trailing backslash made MLflow refuse the writer's run search: a writer stuck for good
    "run_id_backslash": ({sc.INSPECT_RUN_ID: "run\\"}, sc.INSPECT_RUN_ID),
    "eval_id_quote": ({sc.INSPECT_EVAL_ID: "e'v"}, sc.INSPECT_EVAL_ID),
    "eval_id_nul": ({sc.INSPECT_EVAL_ID: "e\x00v"}, sc.INSPECT_EVAL_ID),
    "end_time_past_int64": ({"end_time_unix_nano": (1 << 64) - 1}, "timestamps"),
    "deep_value": ({"inspect.extra": deep_value(_values.MAX_VALUE_DEPTH + 1)}, "nested deeper"),
}


def bad_spans(ev: SynthEval) -> list[trace_pb2.Span]:
    return [with_attrs(sample_root(ev), changes) for changes, _ in BAD_SPANS.values()]


def with_flags(records: list[logs_pb2.LogRecord], flags: int) -> list[logs_pb2.LogRecord]:
    """Copies of log records with other W3C trace flags (0x01: the trace was sampled)."""
    out = []
    for rec in records:
        r = logs_pb2.LogRecord()
        r.CopyFrom(rec)
        r.flags = flags
        out.append(r)
    return out


def padded(span: trace_pb2.Span, size: int, salt: int = 0) -> trace_pb2.Span:
    """The same (trace, span) with other content of about ``size`` more bytes."""
    out = trace_pb2.Span()
    out.CopyFrom(span)
    out.attributes.append(kv("inspect.pad", "x" * size + str(salt)))
    return out
