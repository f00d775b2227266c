"""The hook exports with the SDK's own OTLP exporters and encoder, as they are; they load only when
the hook is on; an exporter that raises (an SDK whose contract changed) is said, once per cause."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export import SpanExporter

from inspect_otel.config import load_settings
from inspect_otel.export import TelemetryPipeline
from inspect_otel.mapping import Kind, SpanData

# What the entry point must not load: the exporters and what they pull in.
_HEAVY = ("google.protobuf", "requests", "grpc", "opentelemetry.exporter.otlp.proto.http",
          "opentelemetry.exporter.otlp.proto.grpc", "opentelemetry.exporter.otlp.proto.common")


def spans(count: int, trace_id: int = 0xABC) -> list[SpanData]:
    return [SpanData(trace_id=trace_id, span_id=i + 1, parent_span_id=None, name=f"span {i}",
                     kind=Kind.INTERNAL, start_ns=1_000 + i, end_ns=2_000 + i,
                     attributes={"inspect.span.kind": "test"}) for i in range(count)]


@pytest.mark.parametrize("protocol, module", [
    ("http/protobuf", "opentelemetry.exporter.otlp.proto.http.trace_exporter"),
    ("grpc", "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"),
])
def test_the_pipeline_exports_with_the_sdks_own_exporter(monkeypatch, protocol, module):
    import importlib

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
    pipeline = TelemetryPipeline(load_settings())
    try:
        assert type(pipeline._exporters[0]) is importlib.import_module(module).OTLPSpanExporter
    finally:
        pipeline.close()


class _ChangedSdkExporter(SpanExporter):
    """An exporter as a future SDK might behave: its export raises instead of reporting."""

    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans):  # noqa: ANN001
        self.calls += 1
        raise TypeError("encode_spans() missing 1 required positional argument: 'options'")

    def shutdown(self) -> None:
        pass


def test_an_exporter_that_raises_is_warned_once_per_cause_not_per_batch(caplog):
    exporter = _ChangedSdkExporter()
    pipeline = TelemetryPipeline(load_settings({}), blocking=True,
                                 exporters=(exporter, InMemoryLogRecordExporter()))
    try:
        with caplog.at_level(logging.WARNING, logger="inspect_otel"):
            for trace in range(3):  # three flushes: three batches that fail the same way
                pipeline.emit_spans(spans(4, trace_id=trace + 1), sampled=True)
                pipeline.drain()
            report = pipeline.flush(5)
    finally:
        pipeline.close()
    assert exporter.calls >= 3
    said = [r for r in caplog.records if "span exporter raised" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING, caplog.text
    assert "missing 1 required positional argument" in said[0].getMessage()
    assert report.submitted == 12 and report.lost == 12


def test_the_hook_loads_no_exporter_until_it_is_on():
    """Inspect imports the hook's entry point in every eval process, with the hook on or off:
    the OTLP exporters, protobuf, grpc and requests load only when a pipeline is built; asking
    the hook whether it is on (which also checks variable names) loads none of them either."""
    script = ("import sys, inspect_otel._registry as r; r.InspectOtelHooks().enabled(); "
              f"print(sorted(m for m in {_HEAVY!r} if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "INSPECT_OTEL_"))}
    env["OTEL_EXPORTER_OTLP_ENDPIONT"] = "http://127.0.0.1:9"  # a typo: the hook stays off
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_sampler_comes_from_the_standard_variables(monkeypatch):
    from inspect_otel.export import sampler_from_env

    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    assert "AlwaysOnSampler" in sampler_from_env().get_description()  # the SDK's default root
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    assert "TraceIdRatioBased{0.25}" in sampler_from_env().get_description()


def test_without_the_sdks_logs_signal_spans_still_leave(monkeypatch, caplog):
    """OpenTelemetry Python keeps its logs signal in underscored modules: an SDK without them
    (forced here: the imports fail) costs the log records, said once, and nothing else."""
    from inspect_otel.export import _sdk
    from inspect_otel.mapping import EvaluationResult
    from tests.support.otlp_sink import HttpSink

    sink = HttpSink()
    for module in ("opentelemetry._logs", "opentelemetry.sdk._logs",
                   "opentelemetry.sdk._logs.export"):
        monkeypatch.setitem(sys.modules, module, None)  # import of it raises ImportError
    monkeypatch.setattr(_sdk, "_WARNED_SDK", set())
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    try:
        with caplog.at_level(logging.WARNING, logger="inspect_otel"):
            pipeline = TelemetryPipeline(load_settings())
            pipeline.emit_spans(spans(3), sampled=True)
            pipeline.emit_results([EvaluationResult(0xABC, 1, 1_500, {"gen_ai.evaluation.name":
                                                                        "match"})])
            report = pipeline.flush(10)
            pipeline.close()
    finally:
        sink.stop()
    assert report.completed and report.lost == 0
    assert len(sink.sink.spans) == 3 and sink.sink.logs == []
    said = [r.getMessage() for r in caplog.records if "no logs signal" in r.getMessage()]
    assert len(said) == 1, caplog.text
