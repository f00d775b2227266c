"""Sample root spans -> what the receiver keeps of each sample: its summary, its step metrics,
and the summary tag every sample trace carries to MLflow."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inspect_otel import semconv as sc

from ._mlflow_names import (
    LEGACY_TRACE_TAG_SAMPLE,
    TAG_VALUE_MAX,
    TRACE_TAG_SAMPLE,
    TRUNCATION_MARKER,
    metric_key,
    truncate,
)
from ._values import as_int, as_num, as_text, compact_json


@dataclass(frozen=True)
class SampleSummary:
    """What the receiver keeps about one sample x epoch (from its root span)."""

    trace_id: str  # 32-hex OTel trace id
    run_id: str
    eval_id: str
    task: str
    sample_id: str
    epoch: int
    ordinal: int
    status: str
    start_ns: int
    end_ns: int
    values: Mapping[str, Any]  # column -> value (see SAMPLE_COLUMNS), scores under "score/<name>"


# (attribute, column): per-sample values kept for step metrics and the samples table.
SAMPLE_COLUMNS: tuple[tuple[str, str], ...] = (
    (sc.INSPECT_SAMPLE_UUID, "uuid"),
    (sc.INSPECT_SAMPLE_INDEX, "index"),
    (sc.INSPECT_MODEL, "model"),
    (sc.INSPECT_SAMPLE_TOTAL_TIME, "total_time"),
    (sc.INSPECT_SAMPLE_WORKING_TIME, "working_time"),
    (sc.GEN_AI_USAGE_INPUT_TOKENS, "input_tokens"),
    (sc.GEN_AI_USAGE_OUTPUT_TOKENS, "output_tokens"),
    (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, "cache_read_tokens"),
    (sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, "cache_write_tokens"),
    (sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, "reasoning_tokens"),
    (sc.INSPECT_SAMPLE_TOTAL_TOKENS, "total_tokens"),
    (sc.INSPECT_SAMPLE_COST, "cost"),
    (sc.INSPECT_SAMPLE_RETRIES, "retries"),
    (sc.INSPECT_SAMPLE_LIMIT_TYPE, "limit"),
    (sc.ERROR_TYPE, "error_type"),
    (sc.INSPECT_ERROR_MESSAGE, "error"),
    (sc.INSPECT_SAMPLE_INPUT, "input"),
    (sc.INSPECT_SAMPLE_TARGET, "target"),
    (sc.INSPECT_SAMPLE_OUTPUT, "output"),
)


# column -> step metric name (sample/<name>); scores add sample/<scorer>.
SAMPLE_STEP_METRICS: tuple[tuple[str, str], ...] = (
    ("total_time", "sample/total_time"),
    ("working_time", "sample/working_time"),
    ("total_tokens", "sample/total_tokens"),
    ("input_tokens", "sample/input_tokens"),
    ("output_tokens", "sample/output_tokens"),
    ("cost", "sample/cost"),
)


SCORE_COLUMN_PREFIX = "score/"


# Scalar sample metadata the hook sent (inspect.sample.metadata.<key>) -> column metadata/<key>.
METADATA_COLUMN_PREFIX = "metadata/"



def sample_summary(trace_id: str, start_ns: int, end_ns: int,
                   attrs: Mapping[str, Any]) -> SampleSummary | None:
    """Summary of a sample root span; None when the span is not a sample root."""
    if attrs.get(sc.INSPECT_SPAN_KIND) != sc.SPAN_KIND_SAMPLE:
        return None
    run_id, eval_id = as_text(attrs.get(sc.INSPECT_RUN_ID)), as_text(attrs.get(sc.INSPECT_EVAL_ID))
    if not run_id or not eval_id:
        return None
    values: dict[str, Any] = {}
    for attr, col in SAMPLE_COLUMNS:
        v = attrs.get(attr)
        if v is not None and v != "":
            values[col] = v
    for attr, v in sorted(attrs.items()):
        if attr.startswith(sc.INSPECT_SAMPLE_SCORE_PREFIX) and as_num(v) is not None:
            values[SCORE_COLUMN_PREFIX + attr[len(sc.INSPECT_SAMPLE_SCORE_PREFIX):]] = as_num(v)
        elif attr.startswith(sc.INSPECT_SAMPLE_METADATA_PREFIX) and v is not None:
            values[METADATA_COLUMN_PREFIX + attr[len(sc.INSPECT_SAMPLE_METADATA_PREFIX):]] = v
    epoch = as_int(attrs.get(sc.INSPECT_SAMPLE_EPOCH)) or 1
    ordinal = as_int(attrs.get(sc.INSPECT_SAMPLE_ORDINAL))
    if ordinal is None:
        index = as_int(attrs.get(sc.INSPECT_SAMPLE_INDEX))
        ordinal = index if index is not None else 0
    return SampleSummary(
        trace_id=trace_id,
        run_id=run_id,
        eval_id=eval_id,
        task=as_text(attrs.get(sc.INSPECT_TASK_NAME)),
        sample_id=as_text(attrs.get(sc.INSPECT_SAMPLE_ID)),
        epoch=epoch,
        ordinal=ordinal,
        status=as_text(attrs.get(sc.INSPECT_SAMPLE_STATUS)) or "success",
        start_ns=start_ns,
        end_ns=end_ns,
        values=values,
    )



def sample_step_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """Step metrics of one sample (the step is its ordinal, the timestamp its end time)."""
    out: dict[str, float] = {}
    for col, v in values.items():
        if col.startswith(SCORE_COLUMN_PREFIX) and as_num(v) is not None:
            out[metric_key("sample/" + col[len(SCORE_COLUMN_PREFIX):])] = as_num(v)  # type: ignore[assignment]
    for col, name in SAMPLE_STEP_METRICS:
        v = as_num(values.get(col))
        if v is not None:
            out[name] = v
    return out


# Whichever receiver finalizes a task reads these back from MLflow (with the traces'
# assessments), so tables and aggregates do not depend on which receiver got which sample.
SAMPLE_SUMMARY_VERSION = 1


# (root attribute, key): per-sample counts summed into the task aggregates.
SAMPLE_COUNTS: tuple[tuple[str, str], ...] = (
    (sc.INSPECT_SAMPLE_MODEL_CALLS, "model_calls"),
    (sc.INSPECT_SAMPLE_MODEL_ERRORS, "model_errors"),
    (sc.INSPECT_SAMPLE_TOOL_CALLS, "tool_calls"),
    (sc.INSPECT_SAMPLE_TOOL_ERRORS, "tool_errors"),
)


# Free-text columns, shortened (each to the same length) with text metadata until the summary
# fits one trace tag; the full text stays on the trace itself.
SAMPLE_TEXT_COLUMNS = ("input", "target", "output", "error")



def _shrinkable(column: str, value: Any) -> bool:
    return isinstance(value, str) and (column in SAMPLE_TEXT_COLUMNS
                                       or column.startswith(METADATA_COLUMN_PREFIX))



def sample_summary_tag(summary: SampleSummary, attrs: Mapping[str, Any]) -> str:
    """The sample's summary as compact JSON of at most TAG_VALUE_MAX characters: identity,
    status, the samples-table columns, the counts, and how many distinct final evaluation
    results to expect (``inspect.sample.evaluations``, when the hook sent it)."""
    counts = {key: n for attr, key in SAMPLE_COUNTS if (n := as_int(attrs.get(attr))) is not None}
    values = dict(summary.values)
    doc: dict[str, Any] = {"v": SAMPLE_SUMMARY_VERSION, "sample_id": summary.sample_id,
                           "epoch": summary.epoch, "ordinal": summary.ordinal,
                           "status": summary.status, "values": values, "counts": counts}
    evaluations = as_int(attrs.get(sc.INSPECT_SAMPLE_EVALUATIONS))
    if evaluations is not None:
        doc["evaluations"] = evaluations
    text = compact_json(doc)
    texts = sorted(c for c, v in values.items() if _shrinkable(c, v))
    if len(text) > TAG_VALUE_MAX and texts:
        full = {c: values[c] for c in texts}
        room = TAG_VALUE_MAX - len(compact_json({**doc, "values": {**values, **dict.fromkeys(texts, "")}}))
        each = max(0, room // len(texts))
        while True:
            values.update({c: truncate(full[c], each) if each > len(TRUNCATION_MARKER) else ""
                           for c in texts})
            text = compact_json(doc)
            if len(text) <= TAG_VALUE_MAX or each == 0:
                break
            # escaping made it longer than the characters counted: shrink in proportion
            each = max(0, each * TAG_VALUE_MAX // len(text) - 1)
    if len(text) > TAG_VALUE_MAX:  # thousands of columns: the numbers, then what aggregates need
        keep = {k: v for k, v in values.items() if not isinstance(v, str)}
        text = compact_json({**doc, "values": keep, "truncated": True})
        if len(text) > TAG_VALUE_MAX:
            keep = {k: v for k, v in values.items() if k == "total_time"}
            text = compact_json({**doc, "values": keep, "truncated": True})
    return text



def parse_sample_summary(text: str | None) -> dict[str, Any] | None:
    """A sample summary read back from a trace tag; None when absent or not one."""
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("v") != SAMPLE_SUMMARY_VERSION:
        return None
    return doc


def summary_of_trace(tags: Mapping[str, str]) -> dict[str, Any] | None:
    """The sample summary a trace carries (its tag, or the tag older receivers wrote)."""
    return parse_sample_summary(tags.get(TRACE_TAG_SAMPLE) or tags.get(LEGACY_TRACE_TAG_SAMPLE))
