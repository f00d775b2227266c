"""A task's tables, aggregates and per-sample step metrics, computed from the sample records
MLflow holds (whichever receiver got which sample)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._samples import sample_step_metrics
from ._tables import samples_table, scores_table
from ._values import as_int, as_num, compact_json


@dataclass(frozen=True)
class SampleRecord:
    """One sample trace as MLflow holds it: id, summary tag, assessments (plain dicts with
    name, value, label, rationale, source_type, source_id, span_id), its trace tags."""

    trace_id: str  # MLflow trace id ("tr-...")
    summary: Mapping[str, Any]
    assessments: tuple[Mapping[str, Any], ...]
    end_ms: int | None = None  # when the sample ended (the step metrics' timestamp)
    tags: Mapping[str, str] = field(default_factory=dict)



@dataclass(frozen=True)
class TaskFinal:
    """What finalizing a task writes, and whether the task is complete."""

    samples: dict[str, list[Any]]  # samples table (columns)
    scores: dict[str, list[Any]]  # scores table (columns)
    aggregates: dict[str, float]
    n_samples: int
    n_assessments: int
    complete: bool
    # (metric key, value, timestamp ms, step): sample/<scorer>, sample/total_time, ... per
    # sample x epoch, step = its ordinal. Written here, after the task's own results, because
    # MLflow's run page lists a run's metrics in the order they were first logged.
    step_metrics: tuple[tuple[str, float, int, int], ...] = ()

    @property
    def digest(self) -> str:
        body = compact_json([self.samples, self.scores, sorted(self.aggregates.items()),
                             list(self.step_metrics)])
        return hashlib.blake2b(body.encode("utf-8"), digest_size=12).hexdigest()

    @property
    def marker(self) -> str:
        """The TAG_FINALIZED value."""
        return f"{self.n_samples}/{self.n_assessments}/{self.digest}"



def _score_value(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None



def task_final(records: Iterable[SampleRecord], expected_samples: int | None) -> TaskFinal:
    """Tables and aggregates of a task from its sample records (any order, any source).
    Complete when all expected samples are there, each with all its evaluation results."""
    unique = {r.trace_id: r for r in records}  # pages of a search can overlap
    recs = sorted(unique.values(), key=lambda r: (as_int(r.summary.get("ordinal")) or 0,
                                          as_int(r.summary.get("epoch")) or 0,
                                          str(r.summary.get("sample_id")), r.trace_id))
    sample_rows, score_rows, latencies, steps = [], [], [], []
    counts: dict[str, int] = {}
    complete = isinstance(expected_samples, int) and len(recs) >= expected_samples
    n_assessments = 0
    for r in recs:
        s = r.summary
        values = s.get("values") if isinstance(s.get("values"), dict) else {}
        row = {"sample_id": s.get("sample_id"), "epoch": s.get("epoch"),
               "ordinal": s.get("ordinal"), "status": s.get("status"), "trace_id": r.trace_id}
        row.update(values)
        sample_rows.append(row)
        ordinal = as_int(s.get("ordinal"))
        if ordinal is not None:
            steps.extend((key, v, r.end_ms or 0, ordinal)
                         for key, v in sorted(sample_step_metrics(values).items()))
        t = as_num(values.get("total_time"))
        if t is not None:
            latencies.append(t)
        for key, n in (s.get("counts") or {}).items():
            if isinstance(n, int):
                counts[key] = counts.get(key, 0) + n
        seen = set()
        for a in sorted(r.assessments, key=lambda a: (str(a.get("name")), a.get("span_id") or "")):
            key = (a.get("name"), a.get("span_id") or "")
            if key in seen:
                continue
            seen.add(key)
            score_rows.append({
                "sample_id": s.get("sample_id"), "epoch": s.get("epoch"),
                "scorer": a.get("source_id"), "name": a.get("name"),
                "value": _score_value(a.get("value")), "label": a.get("label"),
                "rationale": a.get("rationale"), "model_graded": a.get("source_type") == "LLM_JUDGE",
                "trace_id": r.trace_id, "span_id": a.get("span_id") or None,
            })
        n_assessments += len(seen)
        expected = as_int(s.get("evaluations"))
        if expected is not None and len(seen) < expected:
            complete = False
    return TaskFinal(samples=samples_table(sample_rows), scores=scores_table(score_rows),
                     aggregates=aggregate_metrics(latencies, counts, len(recs)),
                     n_samples=len(recs), n_assessments=n_assessments, complete=complete,
                     step_metrics=tuple(steps))



def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of already sorted values."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)



def aggregate_metrics(latencies: Iterable[float], counts: Mapping[str, int],
                      samples: int) -> dict[str, float]:
    """Task metrics derived from the samples the receiver holds (latency and call counts)."""
    out: dict[str, float] = {"samples/received": float(samples)}
    lat = sorted(x for x in latencies if x is not None and math.isfinite(x))
    if lat:
        out["sample_latency/mean"] = sum(lat) / len(lat)
        out["sample_latency/p50"] = percentile(lat, 0.5)
        out["sample_latency/p95"] = percentile(lat, 0.95)
        out["sample_latency/max"] = lat[-1]
    for key in ("model_calls", "model_errors", "tool_calls", "tool_errors"):
        out[key] = float(counts.get(key, 0))
    return out
