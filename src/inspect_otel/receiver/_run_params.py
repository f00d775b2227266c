"""Task span -> the params of its MLflow task run (a data table: add a row to map one more)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspect_otel import semconv as sc
from inspect_otel.redaction import DEFAULT as REDACTOR
from inspect_otel.redaction import is_secret_attribute

from ._mlflow_names import PARAM_VALUE_MAX, metric_key, mlflow_text
from ._values import UNPARSED, as_text, json_value

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
    """Params of the task's MLflow run. A param under a secret name (``task_args.api_key``) is
    dropped; secrets inside a value (a URL's credentials, a key in free text) are redacted. The
    sender's own redaction is not trusted: any OTLP sender can reach this."""
    out: dict[str, str] = {}

    def put(key: str, value: Any) -> None:
        if value is None or value == "" or value == [] or value == {}:
            return
        if is_secret_attribute(key):
            return
        text = REDACTOR.text(as_text(value))
        out[metric_key(key)] = mlflow_text(text, PARAM_VALUE_MAX)

    for attr, name in TASK_PARAMS:
        put(name, attrs.get(attr))
    for attr, prefix in TASK_PARAM_OBJECTS:
        obj = json_value(attrs.get(attr))
        if isinstance(obj, dict):
            for k in sorted(obj):
                put(prefix + str(k), obj[k])
        elif obj is UNPARSED:
            put(prefix.rstrip("."), attrs.get(attr))  # the raw text, truncated (see TAG_UNPARSED)
    for attr, name in TASK_UNPARSED_PARAMS:
        if attrs.get(attr) not in (None, "") and json_value(attrs.get(attr)) is UNPARSED:
            put(name, attrs.get(attr))
    for attr, name in GENERATE_CONFIG_PARAMS:
        put(GENERATE_CONFIG_PARAM_PREFIX + name, attrs.get(attr))
    for attr in sorted(attrs):
        if attr.startswith(sc.INSPECT_GENERATE_CONFIG_PREFIX):
            put(GENERATE_CONFIG_PARAM_PREFIX + attr[len(sc.INSPECT_GENERATE_CONFIG_PREFIX):],
                attrs[attr])
    return out


# JSON-carrying task attributes; the ones that fail to parse are named in TAG_UNPARSED.
TASK_JSON_ATTRIBUTES = tuple(a for a, _ in TASK_PARAM_OBJECTS + TASK_UNPARSED_PARAMS)



def unparsed_attributes(attrs: Mapping[str, Any]) -> list[str]:
    """JSON-carrying task attributes whose text could not be used as structure."""
    return [a for a in TASK_JSON_ATTRIBUTES if attrs.get(a) not in (None, "")
            and json_value(attrs.get(a)) is UNPARSED]
