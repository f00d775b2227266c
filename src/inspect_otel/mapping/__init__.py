"""Inspect data -> span model. Pure functions: no I/O, no OpenTelemetry SDK objects."""

from ._run import map_run, map_task, task_context, task_times
from ._sample import map_sample
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
    "EvaluationResult",
    "Kind",
    "LinkData",
    "ModelCallMeasure",
    "SampleTelemetry",
    "SpanData",
    "SpanEventData",
    "TaskContext",
    "map_run",
    "map_sample",
    "map_task",
    "task_context",
    "task_times",
]
