"""Inspect identity -> MLflow run tags, run names and run status (parent and task runs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspect_otel import semconv as sc

from ._mlflow_names import (
    ROLE_RUN,
    ROLE_TASK,
    TAG_PARENT_RUN_ID,
    TAG_ROLE,
    TAG_SOURCE_NAME,
    TAG_UNPARSED,
    TAG_VALUE_MAX,
    mlflow_text,
)
from ._run_params import unparsed_attributes
from ._values import as_text


def identity(attrs: Mapping[str, Any]) -> dict[str, str]:
    """The Inspect ids present on a span or result (only non-empty ones)."""
    keys = (sc.INSPECT_RUN_ID, sc.INSPECT_EVAL_ID, sc.INSPECT_EVAL_SET_ID, sc.INSPECT_TASK_NAME,
            sc.INSPECT_MODEL)
    return {k: as_text(attrs[k]) for k in keys if attrs.get(k) not in (None, "")}



def parent_run_tags(run_id: str, attrs: Mapping[str, Any]) -> dict[str, str]:
    tags = {sc.INSPECT_RUN_ID: run_id, TAG_ROLE: ROLE_RUN, TAG_SOURCE_NAME: "inspect_ai"}
    if attrs.get(sc.INSPECT_EVAL_SET_ID):
        tags[sc.INSPECT_EVAL_SET_ID] = mlflow_text(as_text(attrs[sc.INSPECT_EVAL_SET_ID]),
                                                   TAG_VALUE_MAX)
    return tags



def parent_run_name(run_id: str, attrs: Mapping[str, Any]) -> str:
    names = attrs.get(sc.INSPECT_RUN_TASK_NAMES)
    if isinstance(names, (list, tuple)) and names:
        return mlflow_text(f"inspect {', '.join(map(as_text, names))}", 250)
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
    task = as_text(attrs.get(sc.INSPECT_TASK_NAME)) or "task"
    model = as_text(attrs.get(sc.INSPECT_MODEL))
    return mlflow_text(f"{task} ({model})" if model else task, 250)


# Inspect status -> MLflow run status.
RUN_STATUS: Mapping[str, str] = {
    "success": "FINISHED",
    "error": "FAILED",
    "cancelled": "KILLED",
}



def run_status(status: Any) -> str | None:
    return RUN_STATUS.get(as_text(status))
