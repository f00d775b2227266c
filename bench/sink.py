"""A counting OTLP/HTTP endpoint for the benchmarks, run in its own process.

It answers every ``/v1/traces``, ``/v1/logs`` and ``/v1/metrics`` POST with an empty (valid)
protobuf response after reading the body; with ``--decode`` it also parses trace requests to count
spans. ``GET /health`` returns the counts as JSON. Used as the export target when the receiver is
unavailable, and as the target of ``inspect-otel export`` in the replay-memory measurement (so the
replay measures the exporting process, not MLflow).

    python bench/sink.py --port 4318 [--decode]
"""

from __future__ import annotations

import argparse
import gzip
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_COUNTS: dict[str, int] = {"requests": 0, "bytes": 0, "spans": 0}
_LOCK = threading.Lock()
_DECODE = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != "/health":
            self.send_error(404)
            return
        with _LOCK:
            payload = json.dumps(_COUNTS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        spans = 0
        if _DECODE and self.path == "/v1/traces":
            from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

            raw = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
            req = trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
            spans = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        with _LOCK:
            _COUNTS["requests"] += 1
            _COUNTS["bytes"] += len(body)
            _COUNTS["spans"] += spans
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


def main() -> int:
    global _DECODE
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--decode", action="store_true", help="parse traces to count spans")
    args = parser.parse_args()
    _DECODE = args.decode
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"sink listening on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
