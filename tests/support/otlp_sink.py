"""A real OTLP endpoint for tests: HTTP (protobuf) and gRPC, decoding what arrives.

It stands in for a collector so tests can assert on exactly what crossed the socket.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(any_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def attrs(key_values: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in key_values}


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    links: list[tuple[str, str]]
    status_code: int
    status_message: str
    resource: dict[str, Any]
    scope: tuple[str, str, str]
    arrived_ns: int = 0  # wall clock when the request carrying it arrived (not compared)

    def __eq__(self, other: object) -> bool:  # what was sent, not when it arrived
        if not isinstance(other, Span):
            return NotImplemented
        return _sent(self) == _sent(other)


def _sent(span: Span) -> tuple[Any, ...]:
    return (span.trace_id, span.span_id, span.parent_span_id, span.name, span.kind,
            span.start_ns, span.end_ns, span.attributes, span.events, span.links,
            span.status_code, span.status_message, span.resource, span.scope)


@dataclass
class LogRecord:
    trace_id: str
    span_id: str
    time_ns: int
    event_name: str
    attributes: dict[str, Any]
    flags: int = 0  # W3C trace flags in the low byte (0x01: the trace was sampled)
    arrived_ns: int = 0


@dataclass
class Sink:
    spans: list[Span] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    metrics: dict[str, list[Any]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # every request body as it arrived (gunzipped)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def raw(self) -> bytes:
        """Every request body as it arrived, joined: what a secret must never be found in."""
        with self.lock:
            return b"".join(self.bodies)

    def add_traces(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        arrived = time.time_ns()
        with self.lock:
            for rs in request.resource_spans:
                resource = attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    scope = (ss.scope.name, ss.scope.version, ss.schema_url)
                    for s in ss.spans:
                        self.spans.append(Span(
                            trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(), name=s.name, kind=s.kind,
                            start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano,
                            attributes=attrs(s.attributes),
                            events=[(e.name, e.time_unix_nano, attrs(e.attributes)) for e in s.events],
                            links=[(l.trace_id.hex(), l.span_id.hex()) for l in s.links],
                            status_code=s.status.code, status_message=s.status.message,
                            resource=resource, scope=scope, arrived_ns=arrived,
                        ))

    def add_logs(self, request: logs_service_pb2.ExportLogsServiceRequest) -> None:
        arrived = time.time_ns()
        with self.lock:
            for rl in request.resource_logs:
                for sl in rl.scope_logs:
                    for r in sl.log_records:
                        self.logs.append(LogRecord(
                            trace_id=r.trace_id.hex(), span_id=r.span_id.hex(),
                            time_ns=r.time_unix_nano, event_name=r.event_name,
                            attributes=attrs(r.attributes), flags=r.flags, arrived_ns=arrived,
                        ))

    def add_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        with self.lock:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        self.metrics.setdefault(m.name, []).append(m)

    def clear(self) -> None:
        with self.lock:
            self.spans.clear()
            self.logs.clear()
            self.metrics.clear()
            self.requests.clear()
            self.bodies.clear()

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.05)
        return False


class _Handler(BaseHTTPRequestHandler):
    sink: Sink

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.sink.requests.append(self.path)
        with self.sink.lock:
            self.sink.bodies.append(body)
        if self.path == "/v1/traces":
            req = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            self.sink.add_traces(req)
            reply = trace_service_pb2.ExportTraceServiceResponse()
        elif self.path == "/v1/logs":
            req = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
            self.sink.add_logs(req)
            reply = logs_service_pb2.ExportLogsServiceResponse()
        elif self.path == "/v1/metrics":
            req = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
            self.sink.add_metrics(req)
            reply = metrics_service_pb2.ExportMetricsServiceResponse()
        else:
            self.send_response(404)
            self.end_headers()
            return
        payload = reply.SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class HttpSink:
    """OTLP/HTTP protobuf endpoint on a free localhost port."""

    def __init__(self) -> None:
        self.sink = Sink()
        handler = type("Handler", (_Handler,), {"sink": self.sink})
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: Sink, refuse: Any = None) -> None:
        self.sink = sink
        self.refuse = refuse  # a grpc.StatusCode every Export is answered with

    def Export(self, request: Any, context: Any) -> Any:
        if self.refuse is not None:
            context.abort(self.refuse, "refused by the test endpoint")
        self.sink.add_traces(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def Export(self, request: Any, context: Any) -> Any:
        self.sink.add_logs(request)
        return logs_service_pb2.ExportLogsServiceResponse()


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def Export(self, request: Any, context: Any) -> Any:
        self.sink.add_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class GrpcSink:
    """OTLP/gRPC endpoint on a free localhost port; ``refuse``: a grpc.StatusCode that every
    traces export gets instead (an endpoint that is wrong in one way: UNAUTHENTICATED, ...)."""

    def __init__(self, refuse: Any = None) -> None:
        import grpc

        self.sink = Sink()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceServicer(self.sink, refuse),
                                                               self.server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsServicer(self.sink), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _MetricsServicer(self.sink), self.server
        )
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)


class StatusServer:
    """An HTTP server on a free localhost port that answers every POST with ``status`` (an
    endpoint that is wrong in one way: 401, 404, ...), or, with ``status="hang"``, never."""

    def __init__(self, status: int | str) -> None:
        import http.server
        import socketserver

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("content-length", 0)))
                if status == "hang":
                    time.sleep(10)
                    return
                self.send_response(int(status))
                self.end_headers()
                self.wfile.write(b"no")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
