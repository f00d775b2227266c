"""The span model: plain frozen data between the mapping (pure) and the exporter (I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Union

from ._server import ModelEndpoints

AttributeValue = Union[str, bool, int, float, tuple[str, ...], tuple[int, ...], tuple[float, ...]]
Attributes = Mapping[str, AttributeValue]


class Kind(Enum):
    INTERNAL = "internal"
    CLIENT = "client"


@dataclass(frozen=True)
class SpanEventData:
    name: str
    time_ns: int
    attributes: Attributes = field(default_factory=dict)


@dataclass(frozen=True)
class LinkData:
    trace_id: int
    span_id: int
    attributes: Attributes = field(default_factory=dict)


@dataclass(frozen=True)
class SpanData:
    trace_id: int
    span_id: int
    parent_span_id: int | None
    name: str
    kind: Kind
    start_ns: int
    end_ns: int
    attributes: Attributes
    events: tuple[SpanEventData, ...] = ()
    links: tuple[LinkData, ...] = ()
    error: str | None = None  # status description; None means status UNSET


@dataclass(frozen=True)
class EvaluationResult:
    """One ``gen_ai.evaluation.result`` log record, in the context of (trace_id, span_id)."""

    trace_id: int
    span_id: int
    time_ns: int
    attributes: Attributes


@dataclass(frozen=True)
class ModelCallMeasure:
    duration_s: float
    input_tokens: int | None
    output_tokens: int | None
    attributes: Attributes  # operation, provider, request/response model, error.type


@dataclass(frozen=True)
class SampleTelemetry:
    spans: tuple[SpanData, ...]
    results: tuple[EvaluationResult, ...]
    model_calls: tuple[ModelCallMeasure, ...]
    tool_calls: tuple[Attributes, ...]
    status: str

    @property
    def root(self) -> SpanData:
        return self.spans[0]


@dataclass(frozen=True)
class TaskContext:
    """What every sample of a task needs from its task (from EvalSpec, live or replayed)."""

    run_id: str
    eval_id: str
    eval_set_id: str | None
    task_name: str
    model: str
    sample_ids: tuple[str, ...] = ()
    epochs: int = 1
    retries: int = 0  # retry_on_error: attempts a sample may be retried after the first
    endpoints: ModelEndpoints = field(default_factory=ModelEndpoints)  # base URLs of its models
    tags: tuple[str, ...] = ()  # Inspect's eval tags (--tags): on each sample root, from the start

    def sample_index(self, sample_id: str) -> int | None:
        try:
            return self.sample_ids.index(sample_id)
        except ValueError:
            return None
