"""The neutral span model both readers produce (OTLP files, MLflow traces) and the transcript
mapping consumes: plain frozen data with decoded attribute values, ids as lowercase hex."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Attributes = Mapping[str, Any]


@dataclass(frozen=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: Attributes = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    trace_id: str  # 32 hex
    span_id: str  # 16 hex
    parent_id: str | None  # 16 hex, None for a root
    name: str
    start_ns: int
    end_ns: int
    attributes: Attributes = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()
    error: str | None = None  # status description when the status is ERROR ("" if none given)
    scope: str = ""
    resource: Attributes = field(default_factory=dict)


@dataclass(frozen=True)
class LogRecord:
    """A log record in a trace's context (``gen_ai.evaluation.result`` events)."""

    trace_id: str
    span_id: str
    time_ns: int
    event_name: str
    attributes: Attributes = field(default_factory=dict)


@dataclass(frozen=True)
class Trace:
    trace_id: str
    spans: tuple[Span, ...]
    logs: tuple[LogRecord, ...] = ()
    source_uri: str | None = None  # where it was read: file path, MLflow trace URL


@dataclass(frozen=True)
class TaskInfo:
    """What a sample transcript takes from its task span (in the run trace), when there is one."""

    eval_id: str
    attributes: Attributes


def hex_id(value: str | bytes | None, length: int) -> str | None:
    """Normalise a trace/span id to lowercase hex of ``length`` characters; None when empty."""
    if value is None:
        return None
    text = value.hex() if isinstance(value, (bytes, bytearray)) else str(value).lower()
    if text.startswith("tr-"):
        text = text[3:]
    if not text or not any(c != "0" for c in text):
        return None
    return text.rjust(length, "0") if len(text) <= length else text
