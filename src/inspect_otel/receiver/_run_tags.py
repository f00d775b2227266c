"""Inspect identity -> MLflow run tags, run names and run status.

Each Inspect task is one top-level MLflow evaluation run: MLflow's Evaluation runs page lists
every run, indents nested ones by two levels under their parent, and shows the first dozen
characters of a name, so a parent run per Inspect run was an empty row above its tasks, and the
tasks' names were cut to a letter. Receivers before that made such parent runs; they are still
updated when a spool holds one (``parent_run_tags``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspect_otel import semconv as sc
from inspect_otel.labels import NAME_SEPARATOR, short_model
from inspect_otel.labels import labelled_name as _labelled_name
from inspect_otel.redaction import DEFAULT as REDACTOR
from inspect_otel.redaction import is_secret_key

from ._mlflow_names import (
    LABEL_VALUE_MAX,
    MAX_LABEL_TAGS,
    ROLE_RUN,
    ROLE_TASK,
    RUN_TYPE_EVALUATION,
    TAG_LABEL_PREFIX,
    TAG_LABEL_VALUE,
    TAG_LABELS,
    TAG_METADATA_PREFIX,
    TAG_ROLE,
    TAG_RUN_TYPE,
    TAG_SOURCE_NAME,
    TAG_UNPARSED,
    TAG_VALUE_MAX,
    metric_key,
    mlflow_text,
)
from ._run_params import unparsed_attributes
from ._values import as_text, compact_json, json_value

RUN_NAME_MAX = 250


def identity(attrs: Mapping[str, Any]) -> dict[str, str]:
    """The Inspect ids present on a span or result (only non-empty ones)."""
    keys = (sc.INSPECT_RUN_ID, sc.INSPECT_EVAL_ID, sc.INSPECT_EVAL_SET_ID, sc.INSPECT_TASK_NAME,
            sc.INSPECT_MODEL)
    return {k: as_text(attrs[k]) for k in keys if attrs.get(k) not in (None, "")}



def texts(value: Any) -> list[str]:
    """A string[] attribute (or one string) as distinct non-empty texts, in order."""
    items = value if isinstance(value, (list, tuple)) else [value] if value else []
    return list(dict.fromkeys(t for t in (as_text(v).strip() for v in items) if t))


def labelled_name(base: str, models: list[str], tags: list[str]) -> str:
    """``base · model · tag, tag``: the labels that tell baseline from candidate in a run list."""
    return mlflow_text(_labelled_name(base, models, tags), RUN_NAME_MAX)


def label_tags(tags: list[str], metadata: Any) -> dict[str, str]:
    """Inspect's labels as run tags: one per eval tag, all of them in one, one per metadata key
    (scalars as text, anything else as JSON; secret-named keys dropped, secrets in values
    redacted, as for params: the sender's redaction is not trusted; bounded)."""
    out: dict[str, str] = {}
    for tag in tags[:MAX_LABEL_TAGS]:
        out[metric_key(TAG_LABEL_PREFIX + tag)] = TAG_LABEL_VALUE
    if tags:
        out[TAG_LABELS] = mlflow_text(", ".join(tags), TAG_VALUE_MAX)
    obj = json_value(metadata)
    if isinstance(obj, dict):
        kept = 0
        for key in sorted(obj, key=str):
            value = obj[key]
            if value is None or kept >= MAX_LABEL_TAGS:
                continue
            text = as_text(value) if isinstance(value, (str, int, float, bool)) else \
                compact_json(value)
            if is_secret_key(str(key)):
                continue
            out[metric_key(TAG_METADATA_PREFIX + str(key))] = mlflow_text(REDACTOR.text(text),
                                                                          LABEL_VALUE_MAX)
            kept += 1
    return out


def parent_run_tags(run_id: str, attrs: Mapping[str, Any]) -> dict[str, str]:
    """Tags of an Inspect run's parent run (made by older receivers only)."""
    tags = {sc.INSPECT_RUN_ID: run_id, TAG_ROLE: ROLE_RUN, TAG_SOURCE_NAME: "inspect_ai"}
    if attrs.get(sc.INSPECT_EVAL_SET_ID):
        tags[sc.INSPECT_EVAL_SET_ID] = mlflow_text(as_text(attrs[sc.INSPECT_EVAL_SET_ID]),
                                                   TAG_VALUE_MAX)
    tags.update(label_tags(texts(attrs.get(sc.INSPECT_RUN_TAGS)), None))
    return tags



def short_task(name: str) -> str:
    """A registered task's name without its package (``inspect_evals/gsm8k`` -> ``gsm8k``):
    the runs list shows the first few words of a name only."""
    return name.rsplit("/", 1)[-1] or name


def parent_run_name(run_id: str, attrs: Mapping[str, Any]) -> str:
    """Named like its tasks (a one-task run like its task run), with the same labels."""
    names = texts(attrs.get(sc.INSPECT_RUN_TASK_NAMES))
    base = ", ".join(short_task(n) for n in names) if names else f"inspect {run_id}"
    return labelled_name(base, texts(attrs.get(sc.INSPECT_RUN_MODELS)),
                         texts(attrs.get(sc.INSPECT_RUN_TAGS)))



def task_run_tags(eval_id: str, attrs: Mapping[str, Any]) -> dict[str, str]:
    tags = {
        sc.INSPECT_EVAL_ID: eval_id,
        TAG_ROLE: ROLE_TASK,
        TAG_SOURCE_NAME: "inspect_ai",
        TAG_RUN_TYPE: RUN_TYPE_EVALUATION,
    }
    for k, v in identity(attrs).items():
        if k != sc.INSPECT_EVAL_ID:
            tags[k] = mlflow_text(v, TAG_VALUE_MAX)
    tags.update(label_tags(texts(attrs.get(sc.INSPECT_TASK_TAGS)),
                           attrs.get(sc.INSPECT_TASK_METADATA)))
    unparsed = unparsed_attributes(attrs)
    if unparsed:
        tags[TAG_UNPARSED] = ",".join(unparsed)
    return tags


EVAL_ID_SHOWN = 6  # characters of the eval id that end a run's name


def task_run_name(eval_id: str, attrs: Mapping[str, Any]) -> str:
    """``tags · model · task · #<eval id>``: what tells one eval from another first (the eval
    tags, then the model; a run list shows a name's first dozen characters), then the task, and
    the start of Inspect's eval id, which tells a re-run of the same configuration apart (and
    is the run's ``inspect.eval_id`` tag)."""
    parts = (", ".join(texts(attrs.get(sc.INSPECT_TASK_TAGS))),
             ", ".join(short_model(m) for m in texts(attrs.get(sc.INSPECT_MODEL))),
             short_task(as_text(attrs.get(sc.INSPECT_TASK_NAME))) or "task",
             f"#{eval_id[:EVAL_ID_SHOWN]}" if eval_id else "")
    return mlflow_text(NAME_SEPARATOR.join(p for p in parts if p), RUN_NAME_MAX)


# Inspect status -> MLflow run status.
RUN_STATUS: Mapping[str, str] = {
    "success": "FINISHED",
    "error": "FAILED",
    "cancelled": "KILLED",
}



def run_status(status: Any) -> str | None:
    return RUN_STATUS.get(as_text(status))
