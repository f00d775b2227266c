"""The spans the hook's export pipeline hands its span exporter for one eval log, in memory: the
log replayed through a real ``TelemetryPipeline`` (replay produces the live hook's spans, ids
included). Settings come from the caller's environment (content capture, redaction)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pipeline_spans(log_location: str) -> list[Any]:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    from inspect_otel.config import load_settings
    from inspect_otel.content import ContentPolicy
    from inspect_otel.export import TelemetryPipeline
    from inspect_otel.replay import ReplaySummary, replay_log

    settings = load_settings()
    memory = InMemorySpanExporter()
    # exporters given: no OTLP and no metric instruments
    pipeline = TelemetryPipeline(settings, blocking=True,
                                 exporters=(memory, InMemoryLogRecordExporter()))
    replay_log(Path(log_location), pipeline, ContentPolicy.from_settings(settings), ReplaySummary())
    assert pipeline.flush(30).completed
    pipeline.close()
    return list(memory.get_finished_spans())
