"""Write OTLP files the way the OpenTelemetry Collector's ``file`` exporter does, from real SDK
spans and log records, with OpenTelemetry's own encoders.

- JSON lines (``format: json``): one ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest``
  per line in the OTLP/JSON encoding (hex trace and span ids), encoded by
  ``opentelemetry-exporter-otlp-json-common`` exactly as the official
  ``opentelemetry-exporter-otlp-json-file`` exporter does. (That exporter package itself pins an
  older OpenTelemetry SDK patch release than this project, so its three-line writer is repeated
  here around the same encoder.)
- protobuf (``format: proto``): each request serialized by
  ``opentelemetry-exporter-otlp-proto-common`` (the encoder of the OTLP exporters) and preceded by
  its length as a 4-byte big-endian unsigned integer, the Collector file exporter's framing.

Traces and logs go to the same file, as with one file exporter in both pipelines. Used by
``inspect-otel export --to-file`` (an OTLP file without a Collector, e.g. for ``scout-import``)
and by the tests. The JSON encoder comes with the ``scout`` extra.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class _OtlpFile:
    def __init__(self, path: Path, fmt: str) -> None:
        self.fmt = fmt
        self._lock = threading.Lock()
        self._file = open(path, "ab" if fmt == "proto" else "a",
                          **({} if fmt == "proto" else {"encoding": "utf-8"}))

    def write_traces(self, spans: Sequence[Any]) -> None:
        if self.fmt == "proto":
            from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
            self._frame(encode_spans(spans).SerializeToString())
        else:
            from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans
            self._line(encode_spans(spans).to_dict())

    def write_logs(self, records: Sequence[Any]) -> None:
        if self.fmt == "proto":
            from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
            self._frame(encode_logs(records).SerializeToString())
        else:
            from opentelemetry.exporter.otlp.json.common._log_encoder import encode_logs
            self._line(encode_logs(records).to_dict())

    def _frame(self, payload: bytes) -> None:
        with self._lock:
            self._file.write(struct.pack(">I", len(payload)) + payload)
            self._file.flush()

    def _line(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class FileSpanExporter(SpanExporter):
    def __init__(self, target: _OtlpFile) -> None:
        self.target = target

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.target.write_traces(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class FileLogExporter(LogRecordExporter):
    def __init__(self, target: _OtlpFile) -> None:
        self.target = target

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        self.target.write_logs(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def otlp_file(path: Path, fmt: str = "json") -> tuple[FileSpanExporter, FileLogExporter, _OtlpFile]:
    """Span and log exporters writing to one file in the Collector file exporter's format."""
    target = _OtlpFile(path, fmt)
    return FileSpanExporter(target), FileLogExporter(target), target
