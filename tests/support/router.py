"""An OTLP/HTTP router for several receivers, as the Collector's ``loadbalancing`` exporter
routes (``routing_key: traceID``): each request is split by trace id and each part goes to the
backend that owns the trace id; log records go by their own trace id. ``mode="random"`` instead
sends every span and log record to a random backend (spans of one trace split too), seeded.

``split(signal, body, n)`` is the pure part (used by tests to deliver synthetic batches);
``OtlpRouter`` serves it on a port for real exporters (the hook): it answers 200 only when every
backend accepted its part, else 503 (the exporter retries the whole request, duplicates
included, as a collector would).
"""

from __future__ import annotations

import random
import threading
import zlib
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

PROTOBUF = "application/x-protobuf"


def owner(trace_id: bytes, n: int) -> int:
    """The backend of a trace id (a stable hash, as the exporter's consistent-hash ring)."""
    return zlib.crc32(trace_id) % n


def _pick(trace_id: bytes, n: int, rnd: random.Random | None) -> int:
    return rnd.randrange(n) if rnd is not None else owner(trace_id, n)


def split(signal: str, body: bytes, n: int, rnd: random.Random | None = None) -> dict[int, bytes]:
    """Split one OTLP protobuf request into per-backend requests (resource and scope kept)."""
    if signal == "traces":
        req = ExportTraceServiceRequest.FromString(body)
        parts: dict[int, Any] = defaultdict(ExportTraceServiceRequest)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                groups: dict[int, list[Any]] = defaultdict(list)
                for span in ss.spans:
                    groups[_pick(span.trace_id, n, rnd)].append(span)
                for i, spans in groups.items():
                    out_rs = parts[i].resource_spans.add()
                    out_rs.resource.CopyFrom(rs.resource)
                    out_rs.schema_url = rs.schema_url
                    out_ss = out_rs.scope_spans.add()
                    out_ss.scope.CopyFrom(ss.scope)
                    out_ss.schema_url = ss.schema_url
                    out_ss.spans.extend(spans)
        return {i: p.SerializeToString() for i, p in parts.items()}
    if signal == "logs":
        req = ExportLogsServiceRequest.FromString(body)
        parts = defaultdict(ExportLogsServiceRequest)
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                groups = defaultdict(list)
                for rec in sl.log_records:
                    groups[_pick(rec.trace_id, n, rnd)].append(rec)
                for i, recs in groups.items():
                    out_rl = parts[i].resource_logs.add()
                    out_rl.resource.CopyFrom(rl.resource)
                    out_sl = out_rl.scope_logs.add()
                    out_sl.scope.CopyFrom(sl.scope)
                    out_sl.log_records.extend(recs)
        return {i: p.SerializeToString() for i, p in parts.items()}
    return {0: body}  # metrics: not routed by trace, any backend


class OtlpRouter:
    """``split`` on a port: POST /v1/{traces,logs,metrics} (protobuf) fanned out to ``backends``
    (receiver base URLs)."""

    def __init__(self, backends: list[str], mode: str = "traceid", seed: int = 0):
        self.backends = list(backends)
        self.rnd = random.Random(seed) if mode == "random" else None
        self._lock = threading.Lock()
        self.requests = 0
        router = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                signal = self.path.rstrip("/").rsplit("/", 1)[-1]
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                ok = router.forward(signal, body)
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", PROTOBUF)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "OtlpRouter":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def forward(self, signal: str, body: bytes) -> bool:
        with self._lock:
            self.requests += 1
            parts = split(signal, body, len(self.backends), self.rnd)
        ok = True
        for i, part in parts.items():
            try:
                r = requests.post(f"{self.backends[i]}/v1/{signal}", data=part, timeout=30,
                                  headers={"Content-Type": PROTOBUF})
                ok &= r.status_code == 200
            except requests.RequestException:
                ok = False
        return ok
