"""Deterministic OpenTelemetry ids derived from Inspect's own ids.

The same Inspect object always maps to the same OTel id, so a sample exported live and the same
sample replayed from its log share trace and span ids, and redelivery is idempotent downstream.
"""

from __future__ import annotations

import hashlib

_NAMESPACE = b"inspect-otel/v1"


def _digest(*parts: str) -> bytes:
    # namespace, then each part behind a unit separator (one joined buffer: one hash call)
    joined = b"\x1f".join((_NAMESPACE, *(part.encode("utf-8") for part in parts)))
    return hashlib.sha256(joined).digest()


def _nonzero(value: int) -> int:
    # An all-zero id is invalid in OTel; astronomically unlikely, but never emit one.
    return value or 1


def sample_trace_id(sample_uuid: str) -> int:
    """Trace id of one sample x epoch (Inspect's sample uuid is unique per sample x epoch)."""
    return _nonzero(int.from_bytes(_digest("sample-trace", sample_uuid)[:16], "big"))


def run_trace_id(run_id: str) -> int:
    """Trace id of the run trace holding the run span and its task spans."""
    return _nonzero(int.from_bytes(_digest("run-trace", run_id)[:16], "big"))


def span_id(trace_id: int, key: str) -> int:
    """Span id for ``key`` (an Inspect span id, event uuid or fixed role) within a trace."""
    return _nonzero(int.from_bytes(_digest("span", format(trace_id, "032x"), key)[:8], "big"))


def run_span_id(run_id: str) -> int:
    return span_id(run_trace_id(run_id), "run")


def task_span_id(run_id: str, eval_id: str) -> int:
    return span_id(run_trace_id(run_id), f"task/{eval_id}")


def sample_root_span_id(sample_uuid: str) -> int:
    return span_id(sample_trace_id(sample_uuid), "sample")


def trace_id_hex(trace_id: int) -> str:
    return format(trace_id, "032x")


def span_id_hex(span_id_value: int) -> str:
    return format(span_id_value, "016x")
