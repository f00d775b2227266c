"""OTLP files as the OpenTelemetry Collector's ``file`` exporter writes them -> traces.

Formats (detected from the first bytes, per file):

- ``format: json``: one OTLP/JSON ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest`` /
  ``ExportMetricsServiceRequest`` per line (hex trace and span ids, 64-bit integers as strings).
- ``format: proto``: each serialized request preceded by its length as a 4-byte big-endian
  unsigned integer. The request type is not recorded; it is recognised from its content.
- ``compression: zstd``: either the whole stream (the exporter's native compression) or each
  record (its older per-record compression) is a zstd frame; needs the ``zstandard`` package.
  A gzip-compressed file is read too.

A collector writes batches as they fill, so one trace's spans are spread over many records,
interleaved with other traces. Reading is two passes with bounded memory: the first pass notes,
for every trace, the last record that holds any of its data (and keeps the few task spans that
sample transcripts take context from); the second pass collects spans and hands each trace over as
soon as its last record has been read. Memory holds only the traces still open at one point of
the file, not the file.

A record that cannot be read (malformed JSON, an unknown request, a truncated frame) is reported
with its place in the file and skipped; every other record is still read. Nothing in a file is
trusted: a record (a JSON line, a protobuf frame, a decompressed zstd frame) over
``max_record_mb`` is skipped without being held in memory; a length prefix that announces more
bytes than the file holds is reported, not read; JSON nested deeper than the receiver accepts is a
bad record, not a ``RecursionError``.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .. import semconv as sc
from ..receiver._decode import MAX_JSON_DEPTH, json_depth_exceeds
from ._spans import LogRecord, Span, SpanEvent, TaskInfo, Trace, hex_id

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"
# A length prefix whose first byte is '{' would announce a record of 2 GB or more.
_JSON_START = (ord("{"), ord(" "), ord("\n"), ord("\r"), ord("\t"))
_STATUS_ERROR = 2
# The largest record read (`inspect-otel scout-import --max-record-mb`). The Collector's batches are
# a few MiB at most (its gRPC receiver's default limit is 4 MiB per request).
DEFAULT_MAX_RECORD_MB = 64
_MB = 1024 * 1024
_CHUNK = _MB  # skipped records are read through in chunks of this size


class OtlpFileError(Exception):
    """A file that cannot be read at all (missing, unreadable, not OTLP)."""


@dataclass(frozen=True)
class Problem:
    path: str
    where: str  # "line 12", "record 3 at byte 1024"
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.where}: {self.message}"


@dataclass
class _Record:
    """One request read from a file: decoded JSON (dict) or protobuf message, with its kind."""

    path: str
    where: str
    kind: str  # traces | logs | metrics
    body: Any
    proto: bool


@dataclass
class FileIndex:
    """What the first pass learnt."""

    last_record: dict[str, int] = field(default_factory=dict)  # trace id -> last record number
    tasks: dict[str, TaskInfo] = field(default_factory=dict)  # eval id -> task span
    records: int = 0
    spans: int = 0
    problems: list[Problem] = field(default_factory=list)


# --- framing -------------------------------------------------------------------------------------

def _open(path: Path) -> IO[bytes]:
    return _open_stream(path)[0]


def _open_stream(path: Path) -> tuple[IO[bytes], bool]:
    """The file's decompressed byte stream, and whether it is compressed (then the file's size
    says nothing about the stream's)."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise OtlpFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise OtlpFileError(f"{path}: is a directory, not an OTLP file") from None
    except OSError as ex:
        raise OtlpFileError(f"{path}: cannot open ({ex.strerror or ex})") from None
    head = raw.peek(4)[:4] if hasattr(raw, "peek") else b""
    if head.startswith(_GZIP_MAGIC):
        return gzip.open(raw), True  # type: ignore[return-value]
    if head == _ZSTD_MAGIC:
        return _zstd_stream(raw, path), True
    return raw, False


def _zstandard(path: Path) -> Any:
    try:
        import zstandard
    except ImportError:
        raise OtlpFileError(
            f"{path}: zstd-compressed; install the zstandard package to read it") from None
    return zstandard


def _zstd_stream(raw: IO[bytes], path: Path) -> IO[bytes]:
    reader = _zstandard(path).ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return io.BufferedReader(reader)  # type: ignore[arg-type]


def _skip(stream: IO[bytes], size: int) -> int:
    """Read past ``size`` bytes in bounded chunks; how many there were."""
    skipped = 0
    while skipped < size:
        chunk = stream.read(min(_CHUNK, size - skipped))
        if not chunk:
            break
        skipped += len(chunk)
    return skipped


def _records(path: Path, max_bytes: int = DEFAULT_MAX_RECORD_MB * _MB,
             ) -> Iterator[tuple[str, bytes | None, str | None, bool]]:
    """(where, payload, problem, proto) for each record of one file, in order."""
    limit = f"--max-record-mb {max_bytes / _MB:g}"
    stream, compressed = _open_stream(path)
    file_size = None if compressed else path.stat().st_size
    with stream:
        first = stream.read(1)
        if not first:
            return
        if first[0] in _JSON_START:
            line_no = 1
            for line in _lines(first, stream, max_bytes):
                if line is None:
                    yield f"line {line_no}", None, f"line longer than {limit}: skipped", False
                elif line.strip():
                    yield f"line {line_no}", line, None, False
                line_no += 1
            return
        head = first + stream.read(3)
        offset, number = 0, 1
        while head:
            where = f"record {number} at byte {offset}"
            if len(head) < 4:
                yield where, None, "truncated length prefix (the file ends mid-record)", True
                return
            (size,) = struct.unpack(">I", head)
            # A length prefix is only believed as far as the file and the limit go: a corrupt or
            # hostile one would otherwise make a single read of up to 4 GiB.
            left = None if file_size is None else file_size - offset - 4
            if left is not None and size > left:
                yield where, None, (f"truncated record: {left} of {size} bytes "
                                    "(the file ends mid-record)"), True
                return
            if size > max_bytes:
                skipped = _skip(stream, size)
                if skipped < size:
                    yield where, None, (f"truncated record: {skipped} of {size} bytes "
                                        "(the file ends mid-record)"), True
                    return
                yield where, None, f"record of {size} bytes is over {limit}: skipped", True
                offset, number, head = offset + 4 + size, number + 1, stream.read(4)
                continue
            payload = stream.read(size)
            if len(payload) < size:
                yield where, None, (f"truncated record: {len(payload)} of {size} bytes "
                                    "(the file ends mid-record)"), True
                return
            if payload[:4] == _ZSTD_MAGIC:  # per-record compression
                try:
                    payload = _zstandard(path).ZstdDecompressor().decompress(
                        payload, max_output_size=max_bytes)
                except OtlpFileError:
                    raise
                except Exception as ex:  # noqa: BLE001 - any zstd error is this record's
                    yield where, None, f"invalid zstd record, or over {limit} ({ex})", True
                    offset, number, head = offset + 4 + size, number + 1, stream.read(4)
                    continue
            yield where, payload, None, True
            offset, number, head = offset + 4 + size, number + 1, stream.read(4)


def _lines(first: bytes, stream: IO[bytes], max_bytes: int) -> Iterator[bytes | None]:
    """The file's lines, each read only up to ``max_bytes`` (None: a longer line, read past)."""
    line = first + stream.readline(max_bytes)
    while line:
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(_CHUNK)
            yield None
        else:
            yield line
        line = stream.readline(max_bytes + 1)


# --- decoding --------------------------------------------------------------------------------------

_JSON_KINDS = {"resourceSpans": "traces", "resourceLogs": "logs", "resourceMetrics": "metrics"}


def _decode(path: str, where: str, payload: bytes, proto: bool) -> _Record:
    """Parse one record; raises ValueError with a message for the user."""
    if not proto:
        # Measured before json.loads, which recurses: a deep line must be a bad record, not a
        # RecursionError that ends the import.
        if json_depth_exceeds(payload, MAX_JSON_DEPTH):
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            body = json.loads(payload)
        except RecursionError:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
        except (ValueError, UnicodeDecodeError) as ex:
            raise ValueError(f"malformed JSON ({ex})") from None
        if not isinstance(body, dict):
            raise ValueError("not an OTLP/JSON request (expected an object)")
        kinds = [kind for key, kind in _JSON_KINDS.items() if key in body]
        if len(kinds) != 1:
            raise ValueError("not an OTLP/JSON traces, logs or metrics request "
                             "(no resourceSpans, resourceLogs or resourceMetrics)")
        return _Record(path, where, kinds[0], body, False)
    kind, message = _proto_request(payload)
    return _Record(path, where, kind, message, True)


def _proto_request(payload: bytes) -> tuple[str, Any]:
    """The request type of a protobuf record. The three OTLP requests share their outer shape,
    so each is tried and checked where they differ (span ids, log and metric fields)."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    checks = (
        ("traces", ExportTraceServiceRequest, _looks_like_traces),
        ("logs", ExportLogsServiceRequest, _looks_like_logs),
        ("metrics", ExportMetricsServiceRequest, _looks_like_metrics),
    )
    for kind, cls, fits in checks:
        message = cls()
        try:
            message.ParseFromString(payload)
        except (DecodeError, RuntimeError, ValueError):
            continue
        if fits(message):
            return kind, message
    raise ValueError("not an OTLP protobuf traces, logs or metrics request")


def _unknown(message: Any) -> bool:
    from google.protobuf.unknown_fields import UnknownFieldSet

    return len(UnknownFieldSet(message)) > 0


def _looks_like_traces(request: Any) -> bool:
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    return bool(spans) and all(
        len(s.trace_id) == 16 and len(s.span_id) == 8 and not _unknown(s) for s in spans)


def _looks_like_logs(request: Any) -> bool:
    records = [r for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    return bool(records) and not any(_unknown(r) for r in records)


def _looks_like_metrics(request: Any) -> bool:
    metrics = [m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    return bool(metrics) and all(m.name and m.WhichOneof("data") for m in metrics)


# OTLP/JSON AnyValue -> python
def _json_value(value: Any) -> Any:
    if not isinstance(value, dict) or not value:
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])  # "NaN", "Infinity" are strings in OTLP/JSON
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_json_value(v) for v in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        return _json_attributes((value["kvlistValue"] or {}).get("values"))
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None


def _json_attributes(key_values: Any) -> dict[str, Any]:
    return {kv["key"]: _json_value(kv.get("value")) for kv in key_values or [] if "key" in kv}


def _proto_attributes(key_values: Any) -> dict[str, Any]:
    from inspect_otel.receiver._values import attributes

    return attributes(key_values)


def _spans_of(record: _Record) -> Iterator[Span]:
    if record.proto:
        for rs in record.body.resource_spans:
            resource = _proto_attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    trace_id, span_id = hex_id(s.trace_id, 32), hex_id(s.span_id, 16)
                    if trace_id is None or span_id is None:
                        continue
                    yield Span(
                        trace_id=trace_id, span_id=span_id,
                        parent_id=hex_id(s.parent_span_id, 16), name=s.name,
                        start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano,
                        attributes=_proto_attributes(s.attributes),
                        events=tuple(SpanEvent(e.name, e.time_unix_nano,
                                               _proto_attributes(e.attributes))
                                     for e in s.events),
                        error=(s.status.message if s.status.code == _STATUS_ERROR else None),
                        scope=ss.scope.name, resource=resource,
                    )
        return
    for rs in record.body.get("resourceSpans") or []:
        resource = _json_attributes((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or []:
            scope = (ss.get("scope") or {}).get("name") or ""
            for s in ss.get("spans") or []:
                trace_id, span_id = hex_id(s.get("traceId"), 32), hex_id(s.get("spanId"), 16)
                if trace_id is None or span_id is None:
                    continue
                status = s.get("status") or {}
                yield Span(
                    trace_id=trace_id, span_id=span_id,
                    parent_id=hex_id(s.get("parentSpanId"), 16), name=s.get("name") or "",
                    start_ns=int(s.get("startTimeUnixNano") or 0),
                    end_ns=int(s.get("endTimeUnixNano") or 0),
                    attributes=_json_attributes(s.get("attributes")),
                    events=tuple(SpanEvent(e.get("name") or "", int(e.get("timeUnixNano") or 0),
                                           _json_attributes(e.get("attributes")))
                                 for e in s.get("events") or []),
                    error=(status.get("message") or "") if status.get("code") in (
                        _STATUS_ERROR, "STATUS_CODE_ERROR") else None,
                    scope=scope, resource=resource,
                )


def _is_result(event_name: str, attributes: dict[str, Any]) -> bool:
    return sc.EVENT_EVALUATION_RESULT in (event_name, attributes.get("event.name"))


def _logs_of(record: _Record) -> Iterator[LogRecord]:
    """Evaluation results (``gen_ai.evaluation.result``) in a trace's context; others skipped."""
    if record.proto:
        for rl in record.body.resource_logs:
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    attrs = _proto_attributes(r.attributes)
                    trace_id = hex_id(r.trace_id, 32)
                    if trace_id and _is_result(r.event_name, attrs):
                        yield LogRecord(trace_id, hex_id(r.span_id, 16) or "",
                                        r.time_unix_nano or r.observed_time_unix_nano,
                                        sc.EVENT_EVALUATION_RESULT, attrs)
        return
    for rl in record.body.get("resourceLogs") or []:
        for sl in rl.get("scopeLogs") or []:
            for r in sl.get("logRecords") or []:
                attrs = _json_attributes(r.get("attributes"))
                trace_id = hex_id(r.get("traceId"), 32)
                if trace_id and _is_result(r.get("eventName") or "", attrs):
                    yield LogRecord(
                        trace_id, hex_id(r.get("spanId"), 16) or "",
                        int(r.get("timeUnixNano") or r.get("observedTimeUnixNano") or 0),
                        sc.EVENT_EVALUATION_RESULT, attrs)


def _trace_ids(record: _Record) -> set[str]:
    """Trace ids a record holds data of (cheap: no attribute decoding for spans)."""
    ids: set[str] = set()
    if record.kind == "traces":
        if record.proto:
            ids.update(s.trace_id.hex() for rs in record.body.resource_spans
                       for ss in rs.scope_spans for s in ss.spans if len(s.trace_id) == 16)
        else:
            for rs in record.body.get("resourceSpans") or []:
                for ss in rs.get("scopeSpans") or []:
                    ids.update(t for s in ss.get("spans") or []
                               if (t := hex_id(s.get("traceId"), 32)))
    elif record.kind == "logs":
        ids.update(r.trace_id for r in _logs_of(record))
    ids.discard("0" * 32)
    return ids


def _task_spans(record: _Record) -> Iterator[Span]:
    for span in _spans_of(record):
        if span.attributes.get(sc.INSPECT_SPAN_KIND) == sc.SPAN_KIND_TASK:
            yield span


# --- the two passes --------------------------------------------------------------------------------

class OtlpFiles:
    """One or more OTLP files read as one stream (rotated files: pass them in order)."""

    def __init__(self, paths: list[str | Path], max_record_mb: float = DEFAULT_MAX_RECORD_MB) -> None:
        self.paths = [Path(p) for p in paths]
        self.max_record_bytes = int(max_record_mb * _MB)
        for path in self.paths:  # fail fast on files that cannot be opened at all
            _open(path).close()

    def _read(self, problems: list[Problem] | None) -> Iterator[_Record | None]:
        """Every record of every file in order; None for a record that could not be read."""
        for path in self.paths:
            for where, payload, problem, proto in _records(path, self.max_record_bytes):
                if problem is None and payload is not None:
                    try:
                        yield _decode(str(path), where, payload, proto)
                        continue
                    except ValueError as ex:
                        problem = str(ex)
                if problems is not None:
                    problems.append(Problem(str(path), where, problem or "unreadable"))
                yield None

    def index(self) -> FileIndex:
        index = FileIndex()
        for number, record in enumerate(self._read(index.problems)):
            index.records += 1
            if record is None:
                continue
            for trace_id in _trace_ids(record):
                index.last_record[trace_id] = number
            if record.kind == "traces":
                for span in _task_spans(record):
                    eval_id = str(span.attributes.get(sc.INSPECT_EVAL_ID) or "")
                    if eval_id:
                        index.tasks[eval_id] = TaskInfo(eval_id, dict(span.attributes))
        return index

    def traces(self, index: FileIndex) -> Iterator[Trace]:
        """Traces in the order they complete in the files, each once, all spans together."""
        open_spans: dict[str, dict[str, Span]] = {}
        open_logs: dict[str, dict[tuple[str, str, int, str], LogRecord]] = {}
        closing: dict[int, list[str]] = {}
        for trace_id, number in index.last_record.items():
            closing.setdefault(number, []).append(trace_id)
        source: dict[str, str] = {}
        for number, record in enumerate(self._read(None)):
            if record is not None:
                if record.kind == "traces":
                    for span in _spans_of(record):
                        # a span delivered twice (collector retries) counts once
                        open_spans.setdefault(span.trace_id, {})[span.span_id] = span
                        source.setdefault(span.trace_id, record.path)
                elif record.kind == "logs":
                    for log in _logs_of(record):
                        key = (log.span_id, str(log.attributes.get(sc.GEN_AI_EVALUATION_NAME)),
                               log.time_ns, log.event_name)
                        open_logs.setdefault(log.trace_id, {})[key] = log
            for trace_id in closing.pop(number, ()):
                spans = open_spans.pop(trace_id, {})
                logs = open_logs.pop(trace_id, {})
                if spans:
                    yield Trace(trace_id, tuple(spans.values()), tuple(logs.values()),
                                source.pop(trace_id, None))
                else:
                    source.pop(trace_id, None)
