"""Task span -> the metrics of its MLflow task run: scorer results, sample counts, token usage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspect_otel import semconv as sc

from ._mlflow_names import metric_key
from ._values import as_num, json_value

# (attribute, metric name): numeric task attributes copied as metrics.
TASK_METRICS: tuple[tuple[str, str], ...] = (
    (sc.INSPECT_TASK_SAMPLES_TOTAL, "samples/total"),
    (sc.INSPECT_TASK_SAMPLES_COMPLETED, "samples/completed"),
    (sc.INSPECT_TASK_SAMPLES_ERRORED, "samples/errored"),
)


# inspect.task.model_usage keys -> metric suffix (usage/<model>/<suffix> and usage/<suffix>).
MODEL_USAGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("total_tokens", "total_tokens"),
    ("input_tokens_cache_read", "cache_read_tokens"),
    ("input_tokens_cache_write", "cache_write_tokens"),
    ("reasoning_tokens", "reasoning_tokens"),
    ("total_cost", "cost"),
)



def task_results(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = json_value(attrs.get(sc.INSPECT_TASK_RESULTS))
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []



def model_usage(attrs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    usage = json_value(attrs.get(sc.INSPECT_TASK_MODEL_USAGE))
    if not isinstance(usage, dict):
        return {}
    return {str(m): u for m, u in usage.items() if isinstance(u, dict)}



def task_metrics(attrs: Mapping[str, Any]) -> dict[str, float]:
    """Metrics the task span alone determines: scorer/metric results, sample counts, usage."""
    out: dict[str, float] = {}
    for row in task_results(attrs):
        value = as_num(row.get("value"))
        name, metric = row.get("name") or row.get("scorer"), row.get("metric")
        if value is not None and name and metric:
            out[metric_key(f"{name}/{metric}")] = value
    if not any(True for _ in task_results(attrs)):
        # Fall back to the flattened copy (inspect.task.metric.<score>/<metric>).
        for attr, v in attrs.items():
            if attr.startswith(sc.INSPECT_TASK_METRIC_PREFIX) and as_num(v) is not None:
                out[metric_key(attr[len(sc.INSPECT_TASK_METRIC_PREFIX):])] = as_num(v)  # type: ignore[assignment]
    for attr, name in TASK_METRICS:
        v = as_num(attrs.get(attr))
        if v is not None:
            out[name] = v
    totals: dict[str, float] = {}
    for model, usage in sorted(model_usage(attrs).items()):
        for field, suffix in MODEL_USAGE_FIELDS:
            v = as_num(usage.get(field))
            if v is None:
                continue
            out[metric_key(f"usage/{model}/{suffix}")] = v
            totals[suffix] = totals.get(suffix, 0.0) + v
    for suffix, v in totals.items():
        out[f"usage/{suffix}"] = v
    return out
