"""OTLP request bodies -> protobuf messages, with validation that maps to clear 4xx answers."""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SIGNALS: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}
PATHS = {"/v1/traces": "traces", "/v1/logs": "logs", "/v1/metrics": "metrics"}

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CONTENT_TYPES = (PROTOBUF, JSON)
ENCODINGS = ("gzip", "deflate", "identity")


@dataclass
class BadRequest(Exception):
    """A request the receiver refuses; ``status`` is the HTTP status to answer with."""

    status: int
    message: str

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_content_type(content_type: str | None) -> str:
    mt = media_type(content_type)
    if mt not in CONTENT_TYPES:
        raise BadRequest(
            415, f"unsupported Content-Type {content_type!r}: use {PROTOBUF} or {JSON}"
        )
    return mt


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo Content-Encoding, never producing more than ``max_bytes`` (decompression bombs)."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "deflate", "x-gzip"):
        raise BadRequest(415, f"unsupported Content-Encoding {encoding!r}: use gzip or deflate")
    # wbits 47 = auto-detect zlib or gzip header; deflate may also come raw (-15).
    candidates = (47,) if enc in ("gzip", "x-gzip") else (47, -15)
    last: Exception | None = None
    for wbits in candidates:
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(body, max_bytes + 1)
            if len(out) > max_bytes or d.unconsumed_tail:
                raise BadRequest(
                    413, f"decompressed body exceeds the limit of {max_bytes} bytes"
                )
            out += d.flush()
            if len(out) > max_bytes:
                raise BadRequest(413, f"decompressed body exceeds the limit of {max_bytes} bytes")
            if not d.eof:
                raise BadRequest(400, f"truncated {enc} body")
            return out
        except zlib.error as e:
            last = e
    raise BadRequest(400, f"invalid {enc} body: {last}")


# OTLP/JSON encodes trace and span ids as hex; protobuf's JSON mapping expects base64.
def _fix_ids(obj: dict, fields: tuple[str, ...], where: str) -> None:
    for f in fields:
        v = obj.get(f)
        if v is None or v == "":
            continue
        if not isinstance(v, str):
            raise BadRequest(400, f"{where}.{f} must be a hex string")
        try:
            raw = bytes.fromhex(v)
        except ValueError:
            raise BadRequest(400, f"{where}.{f} is not valid hex: {v[:40]!r}") from None
        obj[f] = base64.b64encode(raw).decode("ascii")


def _list(obj: dict, key: str) -> list:
    v = obj.get(key) or []
    if not isinstance(v, list):
        raise BadRequest(400, f"{key} must be a list")
    return v


def _hex_ids_to_base64(signal: str, data: dict) -> None:
    ids, link_ids = ("traceId", "spanId", "parentSpanId"), ("traceId", "spanId")
    if signal == "traces":
        for rs in _list(data, "resourceSpans"):
            for ss in _list(rs, "scopeSpans"):
                for sp in _list(ss, "spans"):
                    _fix_ids(sp, ids, "span")
                    for link in _list(sp, "links"):
                        _fix_ids(link, link_ids, "span.links[]")
    elif signal == "logs":
        for rl in _list(data, "resourceLogs"):
            for sl in _list(rl, "scopeLogs"):
                for lr in _list(sl, "logRecords"):
                    _fix_ids(lr, link_ids, "logRecord")
    elif signal == "metrics":
        for rm in _list(data, "resourceMetrics"):
            for sm in _list(rm, "scopeMetrics"):
                for m in _list(sm, "metrics"):
                    for kind in ("gauge", "sum", "histogram", "exponentialHistogram", "summary"):
                        for dp in _list(m.get(kind) or {}, "dataPoints"):
                            for ex in _list(dp, "exemplars"):
                                _fix_ids(ex, link_ids, "exemplar")


def parse(signal: str, body: bytes, mt: str) -> Message:
    """Parse a (decompressed) body of ``signal`` in media type ``mt``."""
    msg = SIGNALS[signal]()
    if mt == JSON:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(400, f"malformed JSON: {e}") from None
        if not isinstance(data, dict):
            raise BadRequest(400, "OTLP/JSON body must be an object")
        _hex_ids_to_base64(signal, data)
        try:
            json_format.ParseDict(data, msg, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError) as e:
            raise BadRequest(400, f"invalid OTLP/JSON {signal} request: {e}") from None
        return msg
    try:
        msg.ParseFromString(body)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise BadRequest(400, f"malformed protobuf {signal} request: {e}") from None
    return msg


def decode(signal: str, body: bytes, content_type: str | None, content_encoding: str | None,
           max_bytes: int) -> tuple[Message, str]:
    """Validate headers, decompress and parse. Returns (message, media type)."""
    mt = check_content_type(content_type)
    raw = decompress(body, content_encoding, max_bytes)
    return parse(signal, raw, mt), mt


def encode_response(msg: Message, mt: str) -> bytes:
    if mt == JSON:
        return json_format.MessageToJson(msg, indent=None).encode("utf-8")
    return msg.SerializeToString()


def error_body(status: int, message: str, mt: str) -> tuple[bytes, str]:
    """A google.rpc.Status body (per OTLP/HTTP) in the request's encoding (JSON when unknown)."""
    from google.rpc import code_pb2, status_pb2

    code = {
        400: code_pb2.INVALID_ARGUMENT,
        401: code_pb2.UNAUTHENTICATED,
        404: code_pb2.NOT_FOUND,
        405: code_pb2.UNIMPLEMENTED,
        413: code_pb2.RESOURCE_EXHAUSTED,
        415: code_pb2.INVALID_ARGUMENT,
        429: code_pb2.RESOURCE_EXHAUSTED,
        503: code_pb2.UNAVAILABLE,
    }.get(status, code_pb2.INTERNAL)
    st = status_pb2.Status(code=code, message=message)
    if mt == PROTOBUF:
        return st.SerializeToString(), PROTOBUF
    return json.dumps({"code": code, "message": message}).encode(), JSON
