"""Evaluation results (``gen_ai.evaluation.result``) -> MLflow assessments."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inspect_otel import semconv as sc

from ._mlflow_names import mlflow_text
from ._values import as_num, as_text


def assessment_id(trace_hex: str, name: str, span_id: str) -> str:
    """MLflow assessment id of one evaluation result: a function of its idempotency key, so the
    same result written twice (redelivery, two receivers) is refused by MLflow's primary key
    instead of doubled."""
    key = f"{trace_hex}\x1f{name}\x1f{span_id}".encode("utf-8")
    return "a-" + hashlib.blake2b(key, digest_size=16).hexdigest()



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
    name = as_text(attrs.get(sc.GEN_AI_EVALUATION_NAME))
    if not name or not trace_id or attrs.get(sc.INSPECT_SCORE_INTERMEDIATE) is True:
        return None
    scorer_span = as_text(attrs.get(sc.INSPECT_SCORE_SPAN_ID)) or span_id
    label = attrs.get(sc.GEN_AI_EVALUATION_SCORE_LABEL)
    return Evaluation(
        trace_id=trace_id,
        span_id=scorer_span.lower(),
        name=name,
        value=as_num(attrs.get(sc.GEN_AI_EVALUATION_SCORE_VALUE)),
        label=as_text(label) if label is not None else None,
        rationale=as_text(attrs.get(sc.GEN_AI_EVALUATION_EXPLANATION)) or None,
        model_graded=attrs.get(sc.INSPECT_SCORER_MODEL_GRADED) is True,
        eval_id=as_text(attrs.get(sc.INSPECT_EVAL_ID)),
        scorer=as_text(attrs.get(sc.INSPECT_SCORER_NAME)) or name.split("/", 1)[0],
        time_ns=time_ns,
        metadata={key: mlflow_text(as_text(attrs[a]), 1000)
                  for a, key in EVALUATION_METADATA if attrs.get(a) not in (None, "")},
        trace_sampled=trace_sampled,
    )
