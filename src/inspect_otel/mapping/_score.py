"""ScoreEvent -> gen_ai.evaluation.result attributes (one per score, or per key of a dict score)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from inspect_ai.scorer import CORRECT, INCORRECT, NOANSWER, PARTIAL, value_to_float

from .. import semconv as sc
from ..content import ContentPolicy

# Inspect's own reading of a score value as a number (C=1, I=0, P=0.5, N=0, yes/true=1, no/false=0,
# numbers and numeric strings as they are). Shared by the hook and `inspect-otel compare`, so a log
# and the telemetry made from it give the same numbers.
_TO_FLOAT = value_to_float()
_SENTINELS = (CORRECT, INCORRECT, PARTIAL, NOANSWER)
_BOOLEAN_WORDS = ("yes", "true", "no", "false")


def _is_finite_number(text: str) -> bool:
    """Does ``text`` parse as a finite float ("-5", "3.14", "1e3"; not "nan" or "inf")? The test
    Inspect's ``value_to_float`` applies to strings (a private helper of Inspect's, repeated)."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def numeric_score(value: Any) -> float | None:
    """``value_to_float`` of a score value; None when Inspect has no numeric reading of it.

    ``value_to_float`` answers 0.0 (with a logged warning) for what it cannot read: None, lists,
    dicts and other strings ("correct", "A", ...). Those are not zeros, so they get no number here
    (the label and the JSON value still carry them). Only that acceptance test is ours; the
    conversion itself is Inspect's.
    """
    if value is None or isinstance(value, (list, dict, Mapping)):
        return None
    if isinstance(value, str) and not (
        value in _SENTINELS or value.lower() in _BOOLEAN_WORDS or _is_finite_number(value)
    ):
        return None
    if not isinstance(value, (str, int, float, bool)):
        return None
    return _TO_FLOAT(value)


def score_label(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return None


def _flatten(name: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return [(f"{name}/{key}", v) for key, v in value.items()]
    return [(name, value)]


def evaluation_attributes(
    scorer: str,
    score: Any,
    intermediate: bool,
    model_graded: bool,
    identity: Mapping[str, Any],
    scorer_span_hex: str,
    policy: ContentPolicy,
    content: bool,
) -> list[dict[str, Any]]:
    """Attributes of each evaluation result in one score. ``content``: include explanation."""
    results = []
    for name, value in _flatten(scorer, score.value):
        attrs: dict[str, Any] = {sc.GEN_AI_EVALUATION_NAME: name, **identity}
        number = numeric_score(value)
        if number is not None:
            attrs[sc.GEN_AI_EVALUATION_SCORE_VALUE] = number
        label = score_label(value)
        if label is not None:
            attrs[sc.GEN_AI_EVALUATION_SCORE_LABEL] = policy.clean(label)
        attrs[sc.INSPECT_SCORE_VALUE_JSON] = policy.clean_json(value)
        attrs[sc.INSPECT_SCORE_INTERMEDIATE] = intermediate
        attrs[sc.INSPECT_SCORER_NAME] = scorer
        attrs[sc.INSPECT_SCORER_MODEL_GRADED] = model_graded
        attrs[sc.INSPECT_SCORE_SPAN_ID] = scorer_span_hex
        if content:
            if score.explanation:
                attrs[sc.GEN_AI_EVALUATION_EXPLANATION] = policy.content(score.explanation)
            if score.answer:
                attrs[sc.INSPECT_SCORE_ANSWER] = policy.content(score.answer)
        results.append(attrs)
    return results
