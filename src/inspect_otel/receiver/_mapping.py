"""Span attributes -> MLflow params, metrics, tags, tables and assessments (pure, no I/O).

Everything here is a function of attribute dicts (already decoded from OTLP) or of rows the
receiver keeps in its spool, so it is unit-testable without a server. The mappings are data
tables: add a row to map one more attribute.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from inspect_otel import semconv as sc

from ._decode import json_depth_exceeds

# Tags the receiver itself writes on MLflow runs (not span attributes).
TAG_ROLE = "inspect.otel.role"  # "run" (parent) or "task" (nested child)
# Comma-separated task attributes whose JSON could not be used as structure (nested deeper than
# MAX_ATTRIBUTE_JSON_DEPTH, or not JSON): their params hold the raw text, truncated.
TAG_UNPARSED = "inspect.otel.unparsed"
ROLE_RUN = "run"
ROLE_TASK = "task"
TAG_PARENT_RUN_ID = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"
TAG_LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"
TAG_SOURCE_NAME = "mlflow.source.name"
# The finalization a task run holds: "<samples>/<assessments>/<digest of its tables and
# aggregates>". Receivers compare it with what they see in MLflow before writing again.
TAG_FINALIZED = "inspect.otel.finalized"
# The eval log stored under the task run's artifacts (LOG_ARTIFACT_DIR): its location, or why not.
TAG_LOG_ARTIFACT = "inspect.otel.log_artifact"
TAG_LOG_ARTIFACT_ERROR = "inspect.otel.log_artifact_error"
LOG_ARTIFACT_DIR = "inspect/logs"

# Trace tags the receiver writes (as mlflow.traceTag.* root attributes): the kind of trace, so
# one filter (`tags.inspect.trace.kind = 'sample'`) shows only sample traces; and the sample
# summary every receiver reads back to build a task's tables and aggregates (JSON, see
# sample_summary_tag).
TRACE_TAG_KIND = "inspect.trace.kind"
TRACE_KIND_SAMPLE = "sample"
TRACE_KIND_RUN = "run"
TRACE_TAG_SAMPLE = "inspect.otel.sample"

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

# Limits on what a sender controls (see docs/receiver.md, "Bad input").
MAX_VALUE_DEPTH = 16  # nested kvlist/array levels in one attribute value
MAX_ATTRIBUTE_JSON_DEPTH = 32  # nesting of JSON carried in string attributes (task args, usage)
MAX_ID_CHARS = 256  # inspect.run_id / inspect.eval_id
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


class ValueTooDeep(ValueError):
    """An attribute value nests kvlists/arrays deeper than ``MAX_VALUE_DEPTH``."""


# --- OTLP AnyValue -> python -----------------------------------------------------------------------
def any_value(v: Any, depth: int = 0) -> Any:
    """Decode an OTLP ``AnyValue`` protobuf message into a python value."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value"):
        if depth >= MAX_VALUE_DEPTH:
            raise ValueTooDeep(f"attribute values nested deeper than {MAX_VALUE_DEPTH} levels")
        if kind == "array_value":
            return [any_value(x, depth + 1) for x in v.array_value.values]
        return {kv.key: any_value(kv.value, depth + 1) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def attributes(kvs: Iterable[Any]) -> dict[str, Any]:
    """Attributes as a dict; raises ValueTooDeep (a ValueError) for over-nested values."""
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
    if isinstance(v, int) and not isinstance(v, bool):
        return v  # exact: going through float would round large ids and ordinals
    f = _num(v)
    return int(f) if f is not None else None


class _Unparsed:
    """What ``_json`` returns for text that is not usable JSON structure."""


UNPARSED = _Unparsed()


def _json(v: Any) -> Any:
    """A JSON-carrying attribute as python data; ``UNPARSED`` when the text is not JSON or nests
    deeper than ``MAX_ATTRIBUTE_JSON_DEPTH`` (checked before parsing, so no input recurses)."""
    if isinstance(v, str):
        if json_depth_exceeds(v, MAX_ATTRIBUTE_JSON_DEPTH):
            return UNPARSED
        try:
            return json.loads(v)
        except (ValueError, RecursionError):
            return UNPARSED
    return v


def _jsonable(o: Any) -> Any:
    return o.hex() if isinstance(o, (bytes, bytearray)) else str(o)


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        return ",".join(_text(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, separators=(",", ":"), default=_jsonable)
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    return str(v)


def truncate(s: str, limit: int) -> str:
    if len(s) <= limit:
        return s
    return s[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def mlflow_text(s: str, limit: int) -> str:
    """A param/tag value MLflow stores on any backend: NUL dropped (PostgreSQL text refuses it),
    truncated to ``limit``."""
    return truncate(s.replace("\x00", ""), limit)


_METRIC_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /:]")


def metric_key(key: str) -> str:
    """A metric or param name MLflow accepts: letters, digits, ``_ - . space / :``, and a
    normalised path (no empty, ``.`` or ``..`` segment, no leading or trailing ``/``), else MLflow
    refuses the whole batch it travels in."""
    key = _METRIC_KEY_BAD.sub("_", key)[:250]
    if "/" in key or key in ("", ".", ".."):  # normalising never makes the key longer
        key = "/".join("_" if p in (".", "..") else p for p in key.split("/") if p) or "_"
    return key


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
# JSON task attributes mapped to metrics and tables: when their text cannot be used as structure,
# it is kept as this param instead (truncated; see TAG_UNPARSED).
TASK_UNPARSED_PARAMS: tuple[tuple[str, str], ...] = (
    (sc.INSPECT_TASK_RESULTS, "results"),
    (sc.INSPECT_TASK_MODEL_USAGE, "model_usage"),
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
        out[metric_key(key)] = mlflow_text(text, PARAM_VALUE_MAX)

    for attr, name in TASK_PARAMS:
        put(name, attrs.get(attr))
    for attr, prefix in TASK_PARAM_OBJECTS:
        obj = _json(attrs.get(attr))
        if isinstance(obj, dict):
            for k in sorted(obj):
                put(prefix + str(k), obj[k])
        elif obj is UNPARSED:
            put(prefix.rstrip("."), attrs.get(attr))  # the raw text, truncated (see TAG_UNPARSED)
    for attr, name in TASK_UNPARSED_PARAMS:
        if attrs.get(attr) not in (None, "") and _json(attrs.get(attr)) is UNPARSED:
            put(name, attrs.get(attr))
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


# JSON-carrying task attributes; the ones that fail to parse are named in TAG_UNPARSED.
TASK_JSON_ATTRIBUTES = tuple(a for a, _ in TASK_PARAM_OBJECTS + TASK_UNPARSED_PARAMS)


def unparsed_attributes(attrs: Mapping[str, Any]) -> list[str]:
    """JSON-carrying task attributes whose text could not be used as structure."""
    return [a for a in TASK_JSON_ATTRIBUTES if attrs.get(a) not in (None, "")
            and _json(attrs.get(a)) is UNPARSED]


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


# --- values the spool keys, orders or stores as integers: checked before anything is stored -------
# Ids the spool keys runs and tasks on (and the writer searches MLflow runs by, inside a quoted
# filter string: a quote or backslash there would make MLflow refuse every search for it).
ID_ATTRIBUTES = (sc.INSPECT_RUN_ID, sc.INSPECT_EVAL_ID)
_ID_BAD_CHARS = re.compile(r"['\\\x00-\x1f\x7f]")
# Integers the spool stores in INTEGER columns and MLflow uses as steps.
INTEGER_ATTRIBUTES = (sc.INSPECT_SAMPLE_ORDINAL, sc.INSPECT_SAMPLE_EPOCH, sc.INSPECT_SAMPLE_INDEX)


def _integer_problem(v: Any) -> str | None:
    if isinstance(v, bool):
        return "must be an integer, not a boolean"
    if isinstance(v, int):
        n = v
    elif isinstance(v, float):
        if not (math.isfinite(v) and v.is_integer()):
            return "must be an integer"
        n = int(v)
    elif isinstance(v, str):
        try:
            n = int(v.strip())
        except ValueError:
            return "must be an integer"
    else:
        return "must be an integer"
    if not INT64_MIN <= n <= INT64_MAX:
        return "is out of the 64-bit integer range"
    return None


def value_problem(attrs: Mapping[str, Any], times_ns: Iterable[int] = ()) -> str | None:
    """Why a span or log record cannot be stored as sent (None when it can): a timestamp past
    int64 nanoseconds, an Inspect id of the wrong type or too long, an ordinal/epoch/index that is
    not a 64-bit integer. The message names the attribute, never the value."""
    if any(not 0 <= t <= INT64_MAX for t in times_ns):
        return "timestamps beyond the 64-bit nanosecond range"
    for attr in ID_ATTRIBUTES:
        v = attrs.get(attr)
        if v is None or v == "":
            continue
        if not isinstance(v, str):
            return f"{attr} must be a string"
        if len(v) > MAX_ID_CHARS:
            return f"{attr} is longer than {MAX_ID_CHARS} characters"
        if _ID_BAD_CHARS.search(v):
            return f"{attr} contains a quote, a backslash or a control character"
    for attr in INTEGER_ATTRIBUTES:
        v = attrs.get(attr)
        if v is not None:
            why = _integer_problem(v)
            if why:
                return f"{attr} {why}"
    return None


# --- identity and tags ------------------------------------------------------------------------------
def identity(attrs: Mapping[str, Any]) -> dict[str, str]:
    """The Inspect ids present on a span or result (only non-empty ones)."""
    keys = (sc.INSPECT_RUN_ID, sc.INSPECT_EVAL_ID, sc.INSPECT_EVAL_SET_ID, sc.INSPECT_TASK_NAME,
            sc.INSPECT_MODEL)
    return {k: _text(attrs[k]) for k in keys if attrs.get(k) not in (None, "")}


def parent_run_tags(run_id: str, attrs: Mapping[str, Any]) -> dict[str, str]:
    tags = {sc.INSPECT_RUN_ID: run_id, TAG_ROLE: ROLE_RUN, TAG_SOURCE_NAME: "inspect_ai"}
    if attrs.get(sc.INSPECT_EVAL_SET_ID):
        tags[sc.INSPECT_EVAL_SET_ID] = mlflow_text(_text(attrs[sc.INSPECT_EVAL_SET_ID]),
                                                   TAG_VALUE_MAX)
    return tags


def parent_run_name(run_id: str, attrs: Mapping[str, Any]) -> str:
    names = attrs.get(sc.INSPECT_RUN_TASK_NAMES)
    if isinstance(names, (list, tuple)) and names:
        return mlflow_text(f"inspect {', '.join(map(_text, names))}", 250)
    return mlflow_text(f"inspect {run_id}", 250)


def task_run_tags(eval_id: str, parent_mlflow_id: str, attrs: Mapping[str, Any]) -> dict[str, str]:
    tags = {
        sc.INSPECT_EVAL_ID: eval_id,
        TAG_ROLE: ROLE_TASK,
        TAG_PARENT_RUN_ID: parent_mlflow_id,
        TAG_SOURCE_NAME: "inspect_ai",
    }
    for k, v in identity(attrs).items():
        if k != sc.INSPECT_EVAL_ID:
            tags[k] = mlflow_text(v, TAG_VALUE_MAX)
    unparsed = unparsed_attributes(attrs)
    if unparsed:
        tags[TAG_UNPARSED] = ",".join(unparsed)
    return tags


def task_run_name(attrs: Mapping[str, Any]) -> str:
    task = _text(attrs.get(sc.INSPECT_TASK_NAME)) or "task"
    model = _text(attrs.get(sc.INSPECT_MODEL))
    return mlflow_text(f"{task} ({model})" if model else task, 250)


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


# --- the sample summary each sample trace carries to MLflow (trace tag TRACE_TAG_SAMPLE) -----------
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


def _compact(obj: Any) -> str:
    # ensure_ascii=False: MLflow limits tag values in characters, and escapes would count 6 each
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def sample_summary_tag(summary: SampleSummary, attrs: Mapping[str, Any]) -> str:
    """The sample's summary as compact JSON of at most TAG_VALUE_MAX characters: identity,
    status, the samples-table columns, the counts, and how many distinct final evaluation
    results to expect (``inspect.sample.evaluations``, when the hook sent it)."""
    counts = {key: n for attr, key in SAMPLE_COUNTS if (n := _int(attrs.get(attr))) is not None}
    values = dict(summary.values)
    doc: dict[str, Any] = {"v": SAMPLE_SUMMARY_VERSION, "sample_id": summary.sample_id,
                           "epoch": summary.epoch, "ordinal": summary.ordinal,
                           "status": summary.status, "values": values, "counts": counts}
    evaluations = _int(attrs.get(sc.INSPECT_SAMPLE_EVALUATIONS))
    if evaluations is not None:
        doc["evaluations"] = evaluations
    text = _compact(doc)
    texts = sorted(c for c, v in values.items() if _shrinkable(c, v))
    if len(text) > TAG_VALUE_MAX and texts:
        full = {c: values[c] for c in texts}
        room = TAG_VALUE_MAX - len(_compact({**doc, "values": {**values, **dict.fromkeys(texts, "")}}))
        each = max(0, room // len(texts))
        while True:
            values.update({c: truncate(full[c], each) if each > len(TRUNCATION_MARKER) else ""
                           for c in texts})
            text = _compact(doc)
            if len(text) <= TAG_VALUE_MAX or each == 0:
                break
            # escaping made it longer than the characters counted: shrink in proportion
            each = max(0, each * TAG_VALUE_MAX // len(text) - 1)
    if len(text) > TAG_VALUE_MAX:  # thousands of columns: the numbers, then what aggregates need
        keep = {k: v for k, v in values.items() if not isinstance(v, str)}
        text = _compact({**doc, "values": keep, "truncated": True})
        if len(text) > TAG_VALUE_MAX:
            keep = {k: v for k, v in values.items() if k == "total_time"}
            text = _compact({**doc, "values": keep, "truncated": True})
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


# --- a task's tables and aggregates, from what MLflow holds ---------------------------------------
@dataclass(frozen=True)
class SampleRecord:
    """One sample trace as MLflow holds it: id, summary tag, assessments (plain dicts with
    name, value, label, rationale, source_type, source_id, span_id)."""

    trace_id: str  # MLflow trace id ("tr-...")
    summary: Mapping[str, Any]
    assessments: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class TaskFinal:
    """What finalizing a task writes, and whether the task is complete."""

    samples: dict[str, list[Any]]  # samples table (columns)
    scores: dict[str, list[Any]]  # scores table (columns)
    aggregates: dict[str, float]
    n_samples: int
    n_assessments: int
    complete: bool

    @property
    def digest(self) -> str:
        body = _compact([self.samples, self.scores, sorted(self.aggregates.items())])
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
    recs = sorted(unique.values(), key=lambda r: (_int(r.summary.get("ordinal")) or 0,
                                          _int(r.summary.get("epoch")) or 0,
                                          str(r.summary.get("sample_id")), r.trace_id))
    sample_rows, score_rows, latencies = [], [], []
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
        t = _num(values.get("total_time"))
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
        expected = _int(s.get("evaluations"))
        if expected is not None and len(seen) < expected:
            complete = False
    return TaskFinal(samples=samples_table(sample_rows), scores=scores_table(score_rows),
                     aggregates=aggregate_metrics(latencies, counts, len(recs)),
                     n_samples=len(recs), n_assessments=n_assessments, complete=complete)


def assessment_id(trace_hex: str, name: str, span_id: str) -> str:
    """MLflow assessment id of one evaluation result: a function of its idempotency key, so the
    same result written twice (redelivery, two receivers) is refused by MLflow's primary key
    instead of doubled."""
    key = f"{trace_hex}\x1f{name}\x1f{span_id}".encode("utf-8")
    return "a-" + hashlib.blake2b(key, digest_size=16).hexdigest()


# --- task aggregates (over the sample summaries MLflow holds) ---------------------------------------
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


# --- trace enrichment before forwarding to MLflow -------------------------------------------------
SPAN_INPUTS = "mlflow.spanInputs"
SPAN_OUTPUTS = "mlflow.spanOutputs"
SPAN_TYPE = "mlflow.spanType"
TRACE_TAG_PREFIX = "mlflow.traceTag."

# Every span the hook emits gets an MLflow span type, decided by the first table that knows it:
# the root kind, then gen_ai.operation.name (as MLflow's own gen_ai translation types them), then
# Inspect's span type, then sandbox actions; any other Inspect span (a user's `span("name")` has
# its name as type) is a step of its parent: CHAIN.
SPAN_TYPE_BY_KIND: Mapping[str, str] = {
    sc.SPAN_KIND_RUN: "WORKFLOW",
    sc.SPAN_KIND_TASK: "TASK",
    sc.SPAN_KIND_SAMPLE: "AGENT",
}
SPAN_TYPE_BY_OPERATION: Mapping[str, str] = {
    sc.OP_CHAT: "CHAT_MODEL",
    "text_completion": "LLM",
    "generate_content": "LLM",
    "embeddings": "EMBEDDING",
    sc.OP_EXECUTE_TOOL: "TOOL",
    sc.OP_INVOKE_AGENT: "AGENT",
    "create_agent": "AGENT",
    sc.OP_INVOKE_WORKFLOW: "WORKFLOW",
}
SPAN_TYPE_BY_INSPECT_TYPE: Mapping[str, str] = {
    "scorer": "EVALUATOR",
    "scorers": "EVALUATOR",
    "solver": "CHAIN",
    "solvers": "CHAIN",
    "init": "CHAIN",
    "sample_init": "CHAIN",
    "subtask": "CHAIN",
    "task": "CHAIN",
    "branch": "CHAIN",
    "handoff": "AGENT",
    "agent": "AGENT",
    "tool": "TOOL",
}
SPAN_TYPE_SANDBOX = "TOOL"
SPAN_TYPE_DEFAULT = "CHAIN"


def span_type(attrs: Mapping[str, Any]) -> str:
    """The MLflow span type of a span the hook emitted (never None)."""
    for attr, table in ((sc.INSPECT_SPAN_KIND, SPAN_TYPE_BY_KIND),
                        (sc.GEN_AI_OPERATION_NAME, SPAN_TYPE_BY_OPERATION),
                        (sc.INSPECT_SPAN_TYPE, SPAN_TYPE_BY_INSPECT_TYPE)):
        v = attrs.get(attr)
        if isinstance(v, str) and v in table:
            return table[v]
    if attrs.get(sc.INSPECT_SANDBOX_ACTION) is not None:
        return SPAN_TYPE_SANDBOX
    return SPAN_TYPE_DEFAULT


# Attributes a sample root does not take to MLflow. MLflow sums token usage over a trace tree-aware
# (a span's usage counts unless an ancestor has usage) over the spans it holds at each write, and
# recomputes only when a write brings usage. The root's sample-wide gen_ai.usage.* would count
# again beside chat spans whose parent reaches MLflow in a later request (a trace split over
# requests or receivers), and the connecting span brings no usage: doubled for good. Without them
# the trace's usage is the sum of its chat spans in any order (the same tokens: Inspect's sample
# usage is the sum of its model calls). The spool keeps them; the sample summary has the totals.
ROOT_ATTRIBUTES_NOT_FORWARDED = frozenset({
    sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_OUTPUT_TOKENS,
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
})


def forwarded_attribute(key: str, enrich: Mapping[str, str]) -> bool:
    """Whether a span attribute goes to MLflow (``enrich``: the span's enrichment)."""
    return not (key in ROOT_ATTRIBUTES_NOT_FORWARDED
                and enrich.get(TRACE_TAG_PREFIX + TRACE_TAG_KIND) == TRACE_KIND_SAMPLE)


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
    """Extra attributes for MLflow: span type, and root inputs/outputs/trace tags (the trace
    kind; on sample roots the summary every receiver reads back, see sample_summary_tag)."""
    out: dict[str, str] = {}
    if SPAN_TYPE not in attrs:
        out[SPAN_TYPE] = span_type(attrs)
    kind = attrs.get(sc.INSPECT_SPAN_KIND)
    if not is_root or kind is None:
        return out
    if kind in (sc.SPAN_KIND_SAMPLE, sc.SPAN_KIND_RUN):
        out[TRACE_TAG_PREFIX + TRACE_TAG_KIND] = str(kind)
    if kind == sc.SPAN_KIND_SAMPLE:
        summary = sample_summary("", 0, 0, attrs)
        if summary is not None:
            out[TRACE_TAG_PREFIX + TRACE_TAG_SAMPLE] = sample_summary_tag(summary, attrs)
    if SPAN_INPUTS not in attrs:
        content = attrs.get(sc.INSPECT_SAMPLE_INPUT) or attrs.get(sc.GEN_AI_INPUT_MESSAGES)
        out[SPAN_INPUTS] = (_text(_no_nul(content)) if content
                            else json.dumps(_no_nul(_summary(attrs, ROOT_INPUT_SUMMARY)),
                                            sort_keys=True, default=_jsonable))
    if SPAN_OUTPUTS not in attrs:
        content = attrs.get(sc.INSPECT_SAMPLE_OUTPUT) or attrs.get(sc.GEN_AI_OUTPUT_MESSAGES)
        if content:
            out[SPAN_OUTPUTS] = _text(_no_nul(content))
        else:
            summary = _summary(attrs, ROOT_OUTPUT_SUMMARY)
            scores = {k[len(sc.INSPECT_SAMPLE_SCORE_PREFIX):]: v for k, v in sorted(attrs.items())
                      if k.startswith(sc.INSPECT_SAMPLE_SCORE_PREFIX)}
            if scores:
                summary["scores"] = scores
            out[SPAN_OUTPUTS] = json.dumps(_no_nul(summary), sort_keys=True, default=_jsonable)
    for attr, tag in TRACE_TAGS:
        if attrs.get(attr) not in (None, "") and TRACE_TAG_PREFIX + tag not in attrs:
            out[TRACE_TAG_PREFIX + tag] = mlflow_text(_text(attrs[attr]), TAG_VALUE_MAX)
    return out


def _no_nul(v: Any) -> Any:
    """``v`` without NUL characters in any string, also inside lists and dicts: MLflow parses the
    root's inputs/outputs JSON into text columns (the model name, the previews), where an escaped
    NUL is a NUL again."""
    if isinstance(v, str):
        return v.replace("\x00", "")
    if isinstance(v, (list, tuple)):
        return [_no_nul(x) for x in v]
    if isinstance(v, dict):
        return {_no_nul(k): _no_nul(x) for k, x in v.items()}
    return v


def _drop_nul_value(v: Any) -> None:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        if "\x00" in v.string_value:
            v.string_value = v.string_value.replace("\x00", "")
    elif kind == "array_value":
        for x in v.array_value.values:
            _drop_nul_value(x)
    elif kind == "kvlist_value":
        _drop_nul_attributes(v.kvlist_value.values)


def _drop_nul_attributes(kvs: Any) -> None:
    for kv in kvs:
        if "\x00" in kv.key:
            kv.key = kv.key.replace("\x00", "")
        _drop_nul_value(kv.value)


def drop_nul(msg: Any) -> Any:
    """Remove NUL characters from the strings of a span or a resource, in place. OTLP allows
    them; PostgreSQL text does not, and MLflow copies span names, models, statuses, tags and
    previews into text columns, so on PostgreSQL one NUL made MLflow refuse the whole trace."""
    _drop_nul_attributes(msg.attributes)
    if not hasattr(msg, "events"):  # a Resource
        return msg
    for holder, name in ((msg, "name"), (msg, "trace_state"), (msg.status, "message")):
        text = getattr(holder, name)
        if "\x00" in text:
            setattr(holder, name, text.replace("\x00", ""))
    for ev in msg.events:
        if "\x00" in ev.name:
            ev.name = ev.name.replace("\x00", "")
        _drop_nul_attributes(ev.attributes)
    for link in msg.links:
        if "\x00" in link.trace_state:
            link.trace_state = link.trace_state.replace("\x00", "")
        _drop_nul_attributes(link.attributes)
    return msg


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
    # The W3C "sampled" trace flag of a log record (None for span events and when unknown): False
    # means the sender dropped the trace, so the result's trace will never arrive.
    trace_sampled: bool | None = None

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


def evaluation(trace_id: str, span_id: str, time_ns: int, attrs: Mapping[str, Any],
               trace_sampled: bool | None = None) -> Evaluation | None:
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
        metadata={key: mlflow_text(_text(attrs[a]), 1000)
                  for a, key in EVALUATION_METADATA if attrs.get(a) not in (None, "")},
        trace_sampled=trace_sampled,
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
