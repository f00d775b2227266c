"""OTLP request bodies -> protobuf messages, with validation that maps to clear 4xx answers.

Every way a body can be wrong ends here as a ``BadRequest`` with a short message meant for the
client: nothing a sender controls may surface as an internal exception (and so as a retryable 5xx
that a standard OTLP exporter would resend forever).
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import operator
import re
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

log = logging.getLogger("inspect_otel.receiver")

# The OTLP/HTTP spec names application/x-protobuf; application/protobuf is the IANA-registered name
# of the same binary encoding (x-protobuf is its deprecated alias), which some senders use.
PROTOBUF = "application/x-protobuf"
PROTOBUF_IANA = "application/protobuf"
JSON = "application/json"
PROTOBUF_TYPES = (PROTOBUF, PROTOBUF_IANA)
CONTENT_TYPES = (*PROTOBUF_TYPES, JSON)
ENCODINGS = ("gzip", "deflate", "identity")

# OTLP/JSON bodies nested deeper than this are refused before parsing. Legitimate OTLP/JSON stays far
# below it (about 10 levels to an attribute value plus 4 per nested kvlist level, and attribute
# values are bounded at 16 levels by the spool); protobuf's own parsers stop at 100 nested messages.
MAX_JSON_DEPTH = 128
MAX_MESSAGE_CHARS = 300  # error messages are for people: short, about the input, never internals


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
    if mt not in CONTENT_TYPES or (mt == PROTOBUF_IANA and _param(content_type, "encoding")
                                   not in (None, "binary")):
        shown = (content_type or "")[:100]
        raise BadRequest(
            415, f"unsupported Content-Type {shown!r}: use {PROTOBUF} or {JSON}"
        )
    return mt


def _param(content_type: str | None, name: str) -> str | None:
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"').lower()
    return None


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo Content-Encoding, never producing more than ``max_bytes`` (decompression bombs)."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "deflate", "x-gzip"):
        raise BadRequest(415, f"unsupported Content-Encoding {encoding[:60]!r}: use gzip or "
                         "deflate")
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
    raise BadRequest(400, f"invalid {enc} body: {_short(str(last))}")


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


# --- JSON nesting, measured before anything recursive touches the text ----------------------------
_NOT_BRACKET_OR_QUOTE = bytes(b for b in range(256) if b not in b'[]{}"')
_OPEN_AS_TWO = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def json_depth_exceeds(text: bytes | str, limit: int) -> bool:
    """True when the JSON ``text`` nests arrays/objects deeper than ``limit`` levels.

    Linear and iterative (a few C-speed passes over the bytes), so it is safe on any input:
    escapes are dropped, only brackets and quotes are kept, brackets inside strings (between
    quotes) are cut out, and the depth is the largest running sum of opens (+1) and closes (-1).
    Unbalanced or otherwise invalid JSON is left for the parser to reject."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    kept = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_BRACKET_OR_QUOTE)
    brackets = b"".join(kept.split(b'"')[::2])
    if len(brackets) <= limit:
        return False
    # opens as 2, closes as 0: the depth after i+1 brackets is their running sum - (i+1)
    depths = map(operator.sub, itertools.accumulate(brackets.translate(_OPEN_AS_TWO)),
                 itertools.count(1))
    return max(depths) > limit


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


def _objects(obj: dict, key: str, where: str) -> list[dict]:
    """``obj[key]`` as a list of JSON objects (absent or null: empty), else a 400."""
    v = obj.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise BadRequest(400, f"{where}.{key} must be a list, got {_json_type(v)}")
    for i, item in enumerate(v):
        if not isinstance(item, dict):
            raise BadRequest(400, f"{where}.{key}[{i}] must be an object, got {_json_type(item)}")
    return v


def _object(obj: dict, key: str, where: str) -> dict:
    v = obj.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise BadRequest(400, f"{where}.{key} must be an object, got {_json_type(v)}")
    return v


def _json_type(v: object) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(v), "a value")


def _hex_ids_to_base64(signal: str, data: dict) -> None:
    ids, link_ids = ("traceId", "spanId", "parentSpanId"), ("traceId", "spanId")
    if signal == "traces":
        for rs in _objects(data, "resourceSpans", "request"):
            for ss in _objects(rs, "scopeSpans", "resourceSpans[]"):
                for sp in _objects(ss, "spans", "scopeSpans[]"):
                    _fix_ids(sp, ids, "span")
                    for link in _objects(sp, "links", "span"):
                        _fix_ids(link, link_ids, "span.links[]")
    elif signal == "logs":
        for rl in _objects(data, "resourceLogs", "request"):
            for sl in _objects(rl, "scopeLogs", "resourceLogs[]"):
                for lr in _objects(sl, "logRecords", "scopeLogs[]"):
                    _fix_ids(lr, link_ids, "logRecord")
    elif signal == "metrics":
        for rm in _objects(data, "resourceMetrics", "request"):
            for sm in _objects(rm, "scopeMetrics", "resourceMetrics[]"):
                for m in _objects(sm, "metrics", "scopeMetrics[]"):
                    for kind in ("gauge", "sum", "histogram", "exponentialHistogram", "summary"):
                        for dp in _objects(_object(m, kind, "metric"), "dataPoints", kind):
                            for ex in _objects(dp, "exemplars", "dataPoint"):
                                _fix_ids(ex, link_ids, "exemplar")


def _reject_constant(name: str) -> float:
    raise BadRequest(400, f"malformed JSON: {name} is not a JSON value (OTLP/JSON writes "
                     f"non-finite doubles as the strings \"NaN\", \"Infinity\", \"-Infinity\")")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise BadRequest(400, f"malformed JSON: duplicate key {dup[:60]!r} in an object")
    return out


_PARSE_PREFIX = re.compile(r"Failed to parse (\w+) field: ")


# json_format wraps whatever python raised while converting a field; those texts describe our
# internals ("'int' object is not iterable"), not the body, so they become one plain phrase.
_PYTHON_ERROR = re.compile(r"'\w+' object|object has no attribute|not iterable|unhashable|"
                           r"NoneType|takes \d+ positional")


def _parse_error_message(text: str) -> str:
    """protobuf's nested "Failed to parse a field: Failed to parse b field: why" -> "a.b: why"."""
    path = _PARSE_PREFIX.findall(text)
    why = _PARSE_PREFIX.sub("", text).rstrip(".")
    if _PYTHON_ERROR.search(why):
        why = "wrong JSON type for this field"
    return f"{'.'.join(path)}: {why}" if path else why


def parse_json(signal: str, body: bytes) -> Message:
    if json_depth_exceeds(body, MAX_JSON_DEPTH):
        raise BadRequest(400, f"OTLP/JSON body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(body, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except BadRequest:
        raise
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise BadRequest(400, _short(f"malformed JSON: {e}")) from None
    except RecursionError:  # unreachable after the depth check; kept as a last guard
        raise BadRequest(400, "OTLP/JSON body nests too deep") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "OTLP/JSON body must be an object")
    _hex_ids_to_base64(signal, data)
    msg = SIGNALS[signal]()
    try:
        json_format.ParseDict(data, msg, ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise BadRequest(400, _short(f"invalid OTLP/JSON {signal} request: "
                                     f"{_parse_error_message(str(e))}")) from None
    except Exception as e:  # noqa: BLE001 - any other failure is still the body's fault
        log.debug("OTLP/JSON %s body rejected", signal, exc_info=e)
        raise BadRequest(400, f"invalid OTLP/JSON {signal} request") from None
    return msg


_PROTOBUF_ERROR_PREFIX = re.compile(r"^Error parsing message( with type '[\w.]+')?:? ?")


def parse_protobuf(signal: str, body: bytes) -> Message:
    msg = SIGNALS[signal]()
    try:
        msg.ParseFromString(body)
    except DecodeError as e:
        why = _PROTOBUF_ERROR_PREFIX.sub("", str(e)) or "not a valid message"
        raise BadRequest(400, _short(f"malformed protobuf {signal} request: {why}")) from None
    except Exception as e:  # noqa: BLE001 - e.g. a RecursionError from a pure-python protobuf
        log.debug("protobuf %s body rejected", signal, exc_info=e)
        raise BadRequest(400, f"malformed protobuf {signal} request") from None
    return msg


def parse(signal: str, body: bytes, mt: str) -> Message:
    """Parse a (decompressed) body of ``signal`` in media type ``mt``."""
    if mt == JSON:
        return parse_json(signal, body)
    return parse_protobuf(signal, body)


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
    if mt in PROTOBUF_TYPES:
        return st.SerializeToString(), mt
    return json.dumps({"code": code, "message": message}).encode(), JSON
