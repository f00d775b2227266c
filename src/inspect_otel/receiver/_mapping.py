"""Span attributes -> MLflow params, metrics, tags, tables and assessments (pure, no I/O).

Everything here is a function of attribute dicts (already decoded from OTLP) or of rows the
receiver keeps in its spool, so it is unit-testable without a server. The mappings are data
tables: add a row to map one more attribute.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from inspect_otel import semconv as sc

# Tags the receiver itself writes on MLflow runs (not span attributes).
TAG_ROLE = "inspect.otel.role"  # "run" (parent) or "task" (nested child)
ROLE_RUN = "run"
ROLE_TASK = "task"
TAG_PARENT_RUN_ID = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"
TAG_LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"
TAG_SOURCE_NAME = "mlflow.source.name"

# MLflow limits (3.x): param values up to 6000 chars, tag values up to 8000.
PARAM_VALUE_MAX = 6000
TAG_VALUE_MAX = 8000
TRUNCATION_MARKER = "...[truncated]"

TABLE_DIR = "inspect"
SAMPLES_TABLE = f"{TABLE_DIR}/samples.json"
SCORES_TABLE = f"{TABLE_DIR}/scores.json"
MODEL_USAGE_TABLE = f"{TABLE_DIR}/model_usage.json"

# The only instrumentation scope the hook emits under.
INSPECT_SCOPE = sc.INSTRUMENTATION_NAME


# --- OTLP AnyValue -> python -----------------------------------------------------------------------
def any_value(v: Any) -> Any:
    """Decode an OTLP ``AnyValue`` protobuf message into a python value."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def attributes(kvs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def is_inspect(scope_name: str, attrs: Mapping[str, Any]) -> bool:
    """True for telemetry the hook emitted (its scope) or that carries ``inspect.*`` attributes."""
    return scope_name == INSPECT_SCOPE or any(k.startswith("inspect.") for k in attrs)


# --- small value helpers ----------------------------------------------------------------------------
def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def _int(v: Any) -> int | None:
    f = _num(v)
    return int(f) if f is not None else None


def _json(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return None
    return v


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        return ",".join(_text(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict,)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    return str(v)


def truncate(s: str, limit: int) -> str:
    if len(s) <= limit:
        return s
    return s[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


_METRIC_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /:]")


def metric_key(key: str) -> str:
    """MLflow accepts letters, digits, ``_ - . space / :`` in metric and param names."""
    return _METRIC_KEY_BAD.sub("_", key)[:250]


# --- secrets: never let them become params ----------------------------------------------------------
_SECRET_KEY = re.compile(
    r"(api[_-]?key|apikey|secret|token|passw(or)?d|credential|authorization|auth[_-]?header|"
    r"private[_-]?key|access[_-]?key|session[_-]?key|bearer)",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"(\bsk-[A-Za-z0-9_\-]{12,}|\bBearer\s+[A-Za-z0-9._\-]{8,}|\bAKIA[0-9A-Z]{16}\b|"
    r"\bgh[pousr]_[A-Za-z0-9]{20,}|\bxox[abprs]-[A-Za-z0-9\-]{10,}|\bAIza[0-9A-Za-z_\-]{30,}|"
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----)"
)


def looks_secret(key: str, value: str) -> bool:
    return bool(_SECRET_KEY.search(key.rsplit(".", 1)[-1]) or _SECRET_VALUE.search(value))


# --- task span -> params -------------------------------------------------------------------------
# (attribute, param name). Values are rendered as text; lists are comma-joined.
TASK_PARAMS: tuple[tuple[str, str], ...] = (
    (sc.INSPECT_TASK_NAME, "task"),
    (sc.INSPECT_TASK_VERSION, "task_version"),
    (sc.INSPECT_TASK_ID, "task_id"),
    (sc.INSPECT_TASK_FILE, "task_file"),
    (sc.INSPECT_MODEL, "model"),
    (sc.GEN_AI_PROVIDER_NAME, "model_provider"),
    (sc.INSPECT_DATASET_NAME, "dataset"),
    (sc.INSPECT_DATASET_LOCATION, "dataset_location"),
    (sc.INSPECT_DATASET_SAMPLES, "dataset_samples"),
    (sc.INSPECT_TASK_SOLVER, "solver"),
    (sc.INSPECT_TASK_PLAN, "plan"),
    (sc.INSPECT_TASK_SCORERS, "scorers"),
    (sc.INSPECT_TASK_EPOCHS, "epochs"),
    (sc.INSPECT_TASK_LIMIT, "limit"),
    (sc.INSPECT_TASK_TAGS, "tags"),
    (sc.INSPECT_EVAL_SET_ID, "eval_set_id"),
)

# JSON-object attributes flattened into one param per key: (attribute, param prefix).
TASK_PARAM_OBJECTS: tuple[tuple[str, str], ...] = (
    (sc.INSPECT_TASK_ARGS, "task_args."),
    (sc.INSPECT_TASK_MODEL_ARGS, "model_args."),
)

# Generate config: GenAI request attributes -> generate_config.<Inspect name>.
GENERATE_CONFIG_PARAMS: tuple[tuple[str, str], ...] = (
    (sc.GEN_AI_REQUEST_TEMPERATURE, "temperature"),
    (sc.GEN_AI_REQUEST_MAX_TOKENS, "max_tokens"),
    (sc.GEN_AI_REQUEST_TOP_P, "top_p"),
    (sc.GEN_AI_REQUEST_TOP_K, "top_k"),
    (sc.GEN_AI_REQUEST_SEED, "seed"),
    (sc.GEN_AI_REQUEST_STOP_SEQUENCES, "stop_seqs"),
    (sc.GEN_AI_REQUEST_FREQUENCY_PENALTY, "frequency_penalty"),
    (sc.GEN_AI_REQUEST_PRESENCE_PENALTY, "presence_penalty"),
    (sc.GEN_AI_REQUEST_CHOICE_COUNT, "num_choices"),
)
GENERATE_CONFIG_PARAM_PREFIX = "generate_config."


def task_params(attrs: Mapping[str, Any]) -> dict[str, str]:
    """Params of the task's MLflow run. Secret-looking keys or values are dropped."""
    out: dict[str, str] = {}

    def put(key: str, value: Any) -> None:
        if value is None or value == "" or value == [] or value == {}:
            return
        text = _text(value)
        if looks_secret(key, text):
            return
        out[metric_key(key)] = truncate(text, PARAM_VALUE_MAX)

    for attr, name in TASK_PARAMS:
        put(name, attrs.get(attr))
    for attr, prefix in TASK_PARAM_OBJECTS:
        obj = _json(attrs.get(attr))
        if isinstance(obj, dict):
            for k in sorted(obj):
                put(prefix + str(k), obj[k])
    for attr, name in GENERATE_CONFIG_PARAMS:
        put(GENERATE_CONFIG_PARAM_PREFIX + name, attrs.get(attr))
    for attr in sorted(attrs):
        if attr.startswith(sc.INSPECT_GENERATE_CONFIG_PREFIX):
            put(GENERATE_CONFIG_PARAM_PREFIX + attr[len(sc.INSPECT_GENERATE_CONFIG_PREFIX):],
                attrs[attr])
    return out


# --- task span -> metrics ---------------------------------------------------------------------------
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
    rows = _json(attrs.get(sc.INSPECT_TASK_RESULTS))
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def model_usage(attrs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    usage = _json(attrs.get(sc.INSPECT_TASK_MODEL_USAGE))
    if not isinstance(usage, dict):
        return {}
    return {str(m): u for m, u in usage.items() if isinstance(u, dict)}


def task_metrics(attrs: Mapping[str, Any]) -> dict[str, float]:
    """Metrics the task span alone determines: scorer/metric results, sample counts, usage."""
    out: dict[str, float] = {}
    for row in task_results(attrs):
        value = _num(row.get("value"))
        name, metric = row.get("name") or row.get("scorer"), row.get("metric")
        if value is not None and name and metric:
            out[metric_key(f"{name}/{metric}")] = value
    if not any(True for _ in task_results(attrs)):
        # Fall back to the flattened copy (inspect.task.metric.<score>/<metric>).
        for attr, v in attrs.items():
            if attr.startswith(sc.INSPECT_TASK_METRIC_PREFIX) and _num(v) is not None:
                out[metric_key(attr[len(sc.INSPECT_TASK_METRIC_PREFIX):])] = _num(v)  # type: ignore[assignment]
    for attr, name in TASK_METRICS:
        v = _num(attrs.get(attr))
        if v is not None:
            out[name] = v
    totals: dict[str, float] = {}
    for model, usage in sorted(model_usage(attrs).items()):
        for field, suffix in MODEL_USAGE_FIELDS:
            v = _num(usage.get(field))
            if v is None:
                continue
            out[metric_key(f"usage/{model}/{suffix}")] = v
            totals[suffix] = totals.get(suffix, 0.0) + v
    for suffix, v in totals.items():
        out[f"usage/{suffix}"] = v
    return out


# --- identity and tags ------------------------------------------------------------------------------
def identity(attrs: Mapping[str, Any]) -> dict[str, str]:
    """The Inspect ids present on a span or result (only non-empty ones)."""
    keys = (sc.INSPECT_RUN_ID, sc.INSPECT_EVAL_ID, sc.INSPECT_EVAL_SET_ID, sc.INSPECT_TASK_NAME,
            sc.INSPECT_MODEL)
    return {k: _text(attrs[k]) for k in keys if attrs.get(k) not in (None, "")}


def parent_run_tags(run_id: str, attrs: Mapping[str, Any]) -> dict[str, str]:
    tags = {sc.INSPECT_RUN_ID: run_id, TAG_ROLE: ROLE_RUN, TAG_SOURCE_NAME: "inspect_ai"}
    if attrs.get(sc.INSPECT_EVAL_SET_ID):
        tags[sc.INSPECT_EVAL_SET_ID] = _text(attrs[sc.INSPECT_EVAL_SET_ID])
    return tags


def parent_run_name(run_id: str, attrs: Mapping[str, Any]) -> str:
    names = attrs.get(sc.INSPECT_RUN_TASK_NAMES)
    if isinstance(names, (list, tuple)) and names:
        return truncate(f"inspect {', '.join(map(str, names))}", 250)
    return f"inspect {run_id}"


def task_run_tags(eval_id: str, parent_mlflow_id: str, attrs: Mapping[str, Any]) -> dict[str, str]:
    tags = {
        sc.INSPECT_EVAL_ID: eval_id,
        TAG_ROLE: ROLE_TASK,
        TAG_PARENT_RUN_ID: parent_mlflow_id,
        TAG_SOURCE_NAME: "inspect_ai",
    }
    for k, v in identity(attrs).items():
        if k != sc.INSPECT_EVAL_ID:
            tags[k] = truncate(v, TAG_VALUE_MAX)
    return tags


def task_run_name(attrs: Mapping[str, Any]) -> str:
    task = _text(attrs.get(sc.INSPECT_TASK_NAME)) or "task"
    model = _text(attrs.get(sc.INSPECT_MODEL))
    return truncate(f"{task} ({model})" if model else task, 250)


# Inspect status -> MLflow run status.
RUN_STATUS: Mapping[str, str] = {
    "success": "FINISHED",
    "error": "FAILED",
    "cancelled": "KILLED",
}


def run_status(status: Any) -> str | None:
    return RUN_STATUS.get(_text(status))


# --- sample roots --------------------------------------------------------------------------------
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
    run_id, eval_id = _text(attrs.get(sc.INSPECT_RUN_ID)), _text(attrs.get(sc.INSPECT_EVAL_ID))
    if not run_id or not eval_id:
        return None
    values: dict[str, Any] = {}
    for attr, col in SAMPLE_COLUMNS:
        v = attrs.get(attr)
        if v is not None and v != "":
            values[col] = v
    for attr, v in sorted(attrs.items()):
        if attr.startswith(sc.INSPECT_SAMPLE_SCORE_PREFIX) and _num(v) is not None:
            values[SCORE_COLUMN_PREFIX + attr[len(sc.INSPECT_SAMPLE_SCORE_PREFIX):]] = _num(v)
        elif attr.startswith(sc.INSPECT_SAMPLE_METADATA_PREFIX) and v is not None:
            values[METADATA_COLUMN_PREFIX + attr[len(sc.INSPECT_SAMPLE_METADATA_PREFIX):]] = v
    epoch = _int(attrs.get(sc.INSPECT_SAMPLE_EPOCH)) or 1
    ordinal = _int(attrs.get(sc.INSPECT_SAMPLE_ORDINAL))
    if ordinal is None:
        index = _int(attrs.get(sc.INSPECT_SAMPLE_INDEX))
        ordinal = index if index is not None else 0
    return SampleSummary(
        trace_id=trace_id,
        run_id=run_id,
        eval_id=eval_id,
        task=_text(attrs.get(sc.INSPECT_TASK_NAME)),
        sample_id=_text(attrs.get(sc.INSPECT_SAMPLE_ID)),
        epoch=epoch,
        ordinal=ordinal,
        status=_text(attrs.get(sc.INSPECT_SAMPLE_STATUS)) or "success",
        start_ns=start_ns,
        end_ns=end_ns,
        values=values,
    )


def sample_step_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """Step metrics of one sample (the step is its ordinal, the timestamp its end time)."""
    out: dict[str, float] = {}
    for col, v in values.items():
        if col.startswith(SCORE_COLUMN_PREFIX) and _num(v) is not None:
            out[metric_key("sample/" + col[len(SCORE_COLUMN_PREFIX):])] = _num(v)  # type: ignore[assignment]
    for col, name in SAMPLE_STEP_METRICS:
        v = _num(values.get(col))
        if v is not None:
            out[name] = v
    return out


# --- task aggregates over the receiver's own per-sample state ---------------------------------------
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


# --- inner spans: what a span counts as, for task aggregates --------------------------------------
def span_category(attrs: Mapping[str, Any]) -> str | None:
    """``model`` or ``tool`` for spans counted in the task aggregates, else None."""
    op = attrs.get(sc.GEN_AI_OPERATION_NAME)
    if op == sc.OP_CHAT:
        return "model"
    if op == sc.OP_EXECUTE_TOOL:
        return "tool"
    return None


# --- trace enrichment before forwarding to MLflow -------------------------------------------------
SPAN_INPUTS = "mlflow.spanInputs"
SPAN_OUTPUTS = "mlflow.spanOutputs"
SPAN_TYPE = "mlflow.spanType"
TRACE_TAG_PREFIX = "mlflow.traceTag."

# inspect.span.kind / inspect.span.type -> MLflow span type (only when MLflow's own translation of
# gen_ai.operation.name would not give a better one: chat -> CHAT_MODEL, execute_tool -> TOOL and
# invoke_agent -> AGENT are left to MLflow).
SPAN_TYPE_BY_KIND: Mapping[str, str] = {
    sc.SPAN_KIND_RUN: "WORKFLOW",
    sc.SPAN_KIND_TASK: "TASK",
    sc.SPAN_KIND_SAMPLE: "AGENT",
}
SPAN_TYPE_BY_INSPECT_TYPE: Mapping[str, str] = {
    "scorer": "EVALUATOR",
    "scorers": "EVALUATOR",
    "solver": "CHAIN",
    "solvers": "CHAIN",
    "init": "CHAIN",
    "subtask": "CHAIN",
    "handoff": "AGENT",
    "agent": "AGENT",
    "sandbox": "TOOL",
}
GEN_AI_OPERATIONS_MLFLOW_TYPES = frozenset({sc.OP_CHAT, sc.OP_EXECUTE_TOOL, sc.OP_INVOKE_AGENT})

# Trace tags copied from sample/run roots: attribute -> trace tag key.
TRACE_TAGS: tuple[tuple[str, str], ...] = (
    (sc.INSPECT_RUN_ID, sc.INSPECT_RUN_ID),
    (sc.INSPECT_EVAL_ID, sc.INSPECT_EVAL_ID),
    (sc.INSPECT_EVAL_SET_ID, sc.INSPECT_EVAL_SET_ID),
    (sc.INSPECT_TASK_NAME, sc.INSPECT_TASK_NAME),
    (sc.INSPECT_SAMPLE_ID, sc.INSPECT_SAMPLE_ID),
    (sc.INSPECT_SAMPLE_EPOCH, sc.INSPECT_SAMPLE_EPOCH),
    (sc.INSPECT_SAMPLE_STATUS, sc.INSPECT_SAMPLE_STATUS),
    (sc.INSPECT_MODEL, sc.INSPECT_MODEL),
    (sc.INSPECT_SPAN_KIND, sc.INSPECT_SPAN_KIND),
)

# Identity summary used as root inputs/outputs when content was not captured.
ROOT_INPUT_SUMMARY: tuple[tuple[str, str], ...] = (
    (sc.INSPECT_TASK_NAME, "task"),
    (sc.INSPECT_SAMPLE_ID, "sample_id"),
    (sc.INSPECT_SAMPLE_EPOCH, "epoch"),
    (sc.INSPECT_MODEL, "model"),
    (sc.INSPECT_RUN_TASK_NAMES, "tasks"),
    (sc.INSPECT_RUN_ID, "run_id"),
)
ROOT_OUTPUT_SUMMARY: tuple[tuple[str, str], ...] = (
    (sc.INSPECT_SAMPLE_STATUS, "status"),
    (sc.INSPECT_TASK_STATUS, "status"),
    (sc.INSPECT_RUN_STATUS, "status"),
    (sc.INSPECT_ERROR_MESSAGE, "error"),
    (sc.INSPECT_SAMPLE_TOTAL_TIME, "total_time"),
)


def _summary(attrs: Mapping[str, Any], table: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, key in table:
        if attrs.get(attr) not in (None, "") and key not in out:
            v = attrs[attr]
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def span_enrichment(attrs: Mapping[str, Any], is_root: bool) -> dict[str, str]:
    """Extra attributes for MLflow: span type, and root inputs/outputs/trace tags."""
    out: dict[str, str] = {}
    if SPAN_TYPE not in attrs:
        kind = attrs.get(sc.INSPECT_SPAN_KIND)
        stype = SPAN_TYPE_BY_KIND.get(kind) if isinstance(kind, str) else None
        if stype is None and attrs.get(sc.GEN_AI_OPERATION_NAME) not in GEN_AI_OPERATIONS_MLFLOW_TYPES:
            itype = attrs.get(sc.INSPECT_SPAN_TYPE)
            if isinstance(itype, str):
                stype = SPAN_TYPE_BY_INSPECT_TYPE.get(itype)
            elif attrs.get(sc.INSPECT_SANDBOX_ACTION) is not None:
                stype = SPAN_TYPE_BY_INSPECT_TYPE["sandbox"]
        if stype:
            out[SPAN_TYPE] = stype
    if not is_root or attrs.get(sc.INSPECT_SPAN_KIND) is None:
        return out
    if SPAN_INPUTS not in attrs:
        content = attrs.get(sc.INSPECT_SAMPLE_INPUT) or attrs.get(sc.GEN_AI_INPUT_MESSAGES)
        out[SPAN_INPUTS] = (_text(content) if content
                            else json.dumps(_summary(attrs, ROOT_INPUT_SUMMARY), sort_keys=True))
    if SPAN_OUTPUTS not in attrs:
        content = attrs.get(sc.INSPECT_SAMPLE_OUTPUT) or attrs.get(sc.GEN_AI_OUTPUT_MESSAGES)
        if content:
            out[SPAN_OUTPUTS] = _text(content)
        else:
            summary = _summary(attrs, ROOT_OUTPUT_SUMMARY)
            scores = {k[len(sc.INSPECT_SAMPLE_SCORE_PREFIX):]: v for k, v in sorted(attrs.items())
                      if k.startswith(sc.INSPECT_SAMPLE_SCORE_PREFIX)}
            if scores:
                summary["scores"] = scores
            out[SPAN_OUTPUTS] = json.dumps(summary, sort_keys=True)
    for attr, tag in TRACE_TAGS:
        if attrs.get(attr) not in (None, "") and TRACE_TAG_PREFIX + tag not in attrs:
            out[TRACE_TAG_PREFIX + tag] = truncate(_text(attrs[attr]), TAG_VALUE_MAX)
    return out


# --- evaluation results -> assessments ------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    trace_id: str  # 32 hex
    span_id: str  # 16 hex scorer span, "" when unknown
    name: str
    value: float | None
    label: str | None
    rationale: str | None
    model_graded: bool
    eval_id: str
    scorer: str
    time_ns: int
    metadata: Mapping[str, str]

    @property
    def key(self) -> tuple[str, str, str]:
        """Idempotency key: one assessment per (trace, name, scorer span)."""
        return (self.trace_id, self.name, self.span_id)


# attribute -> assessment metadata key (all rendered as text).
EVALUATION_METADATA: tuple[tuple[str, str], ...] = (
    (sc.GEN_AI_EVALUATION_SCORE_LABEL, "label"),
    (sc.INSPECT_SCORE_VALUE_JSON, "value_json"),
    (sc.INSPECT_SCORE_ANSWER, "answer"),
    (sc.INSPECT_SAMPLE_ID, sc.INSPECT_SAMPLE_ID),
    (sc.INSPECT_SAMPLE_EPOCH, sc.INSPECT_SAMPLE_EPOCH),
    (sc.INSPECT_RUN_ID, sc.INSPECT_RUN_ID),
    (sc.INSPECT_EVAL_ID, sc.INSPECT_EVAL_ID),
    (sc.INSPECT_TASK_NAME, sc.INSPECT_TASK_NAME),
)


def evaluation(trace_id: str, span_id: str, time_ns: int,
               attrs: Mapping[str, Any]) -> Evaluation | None:
    """A final evaluation result (log record or span event); None if not usable."""
    name = _text(attrs.get(sc.GEN_AI_EVALUATION_NAME))
    if not name or not trace_id or attrs.get(sc.INSPECT_SCORE_INTERMEDIATE) is True:
        return None
    scorer_span = _text(attrs.get(sc.INSPECT_SCORE_SPAN_ID)) or span_id
    label = attrs.get(sc.GEN_AI_EVALUATION_SCORE_LABEL)
    return Evaluation(
        trace_id=trace_id,
        span_id=scorer_span.lower(),
        name=name,
        value=_num(attrs.get(sc.GEN_AI_EVALUATION_SCORE_VALUE)),
        label=_text(label) if label is not None else None,
        rationale=_text(attrs.get(sc.GEN_AI_EVALUATION_EXPLANATION)) or None,
        model_graded=attrs.get(sc.INSPECT_SCORER_MODEL_GRADED) is True,
        eval_id=_text(attrs.get(sc.INSPECT_EVAL_ID)),
        scorer=_text(attrs.get(sc.INSPECT_SCORER_NAME)) or name.split("/", 1)[0],
        time_ns=time_ns,
        metadata={key: truncate(_text(attrs[a]), 1000)
                  for a, key in EVALUATION_METADATA if attrs.get(a) not in (None, "")},
    )


# --- artifact tables --------------------------------------------------------------------------------
SAMPLE_TABLE_FIRST_COLUMNS = ("sample_id", "epoch", "ordinal", "status", "trace_id")


def samples_table(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Column-oriented samples table: identity, scores, tokens, time, error, trace id."""
    rows = list(rows)
    cols: list[str] = list(SAMPLE_TABLE_FIRST_COLUMNS)
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    fixed, rest = cols[: len(SAMPLE_TABLE_FIRST_COLUMNS)], cols[len(SAMPLE_TABLE_FIRST_COLUMNS):]
    scores = sorted(c for c in rest if c.startswith(SCORE_COLUMN_PREFIX))
    others = [c for c, _ in SAMPLE_COLUMNS if c in rest] + sorted(
        c for c in rest if not c.startswith(SCORE_COLUMN_PREFIX)
        and c not in {c2 for c2, _ in SAMPLE_COLUMNS})
    cols = fixed + scores + others
    return {c: [r.get(c) for r in rows] for c in cols}


SCORES_TABLE_COLUMNS = ("sample_id", "epoch", "scorer", "name", "value", "label", "rationale",
                        "model_graded", "trace_id", "span_id")


def scores_table(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    rows = list(rows)
    return {c: [r.get(c) for r in rows] for c in SCORES_TABLE_COLUMNS}


def split_table(columns: dict[str, list[Any]]) -> dict[str, Any]:
    """A column table in the layout ``mlflow.load_table`` reads (pandas "split", no index).

    Written with the json module, not pandas: pandas keeps 10 significant digits of a float and
    turns an int column with a gap into floats; the tables must hold exactly what the spans said
    (``inspect-otel compare`` reads a run's scores and must match the log they came from)."""
    def cell(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    rows = [[cell(v) for v in row] for row in zip(*columns.values())]
    return {"columns": list(columns), "data": rows}


MODEL_USAGE_TABLE_COLUMNS = ("model",) + tuple(f for f, _ in MODEL_USAGE_FIELDS)


def model_usage_table(attrs: Mapping[str, Any]) -> dict[str, list[Any]]:
    usage = model_usage(attrs)
    models = sorted(usage)
    out: dict[str, list[Any]] = {"model": models}
    for field, _ in MODEL_USAGE_FIELDS:
        out[field] = [usage[m].get(field) for m in models]
    return out
