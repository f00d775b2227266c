"""Inspect data -> span model. Pure functions: no I/O, no OpenTelemetry SDK objects."""

from ._run import map_run, map_task, task_context, task_times
from ._sample import abandon_sample, finish_sample, map_sample, sample_identity, sample_uuid
from ._stream import Completed, SampleMapper
from ._types import (
    EvaluationResult,
    Kind,
    LinkData,
    ModelCallMeasure,
    SampleTelemetry,
    SpanData,
    SpanEventData,
    TaskContext,
)

__all__ = [
    "abandon_sample",
    "Completed",
    "EvaluationResult",
    "Kind",
    "LinkData",
    "ModelCallMeasure",
    "SampleMapper",
    "SampleTelemetry",
    "SpanData",
    "SpanEventData",
    "TaskContext",
    "finish_sample",
    "map_run",
    "map_sample",
    "map_task",
    "sample_identity",
    "sample_uuid",
    "task_context",
    "task_times",
]
