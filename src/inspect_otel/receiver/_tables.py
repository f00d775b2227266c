"""The artifact tables of a task run (samples, scores, model usage), in ``mlflow.load_table`` form."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ._run_metrics import MODEL_USAGE_FIELDS, model_usage
from ._samples import SAMPLE_COLUMNS, SCORE_COLUMN_PREFIX

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
