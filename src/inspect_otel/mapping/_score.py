"""ScoreEvent -> gen_ai.evaluation.result attributes (one per score, or per key of a dict score)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import semconv as sc
from ..content import ContentPolicy

# Inspect's conventional string values (inspect_ai.scorer CORRECT, INCORRECT, PARTIAL, NOANSWER).
_STRING_SCORES: Mapping[str, float] = {"C": 1.0, "I": 0.0, "P": 0.5, "N": 0.0}
_TRUTHY = {"yes", "true", "correct"}
_FALSY = {"no", "false", "incorrect"}


def numeric_score(value: Any) -> float | None:
    """Inspect's value_to_float semantics; None when the value has no numeric reading."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        if value in _STRING_SCORES:
            return _STRING_SCORES[value]
        lowered = value.strip().lower()
        if lowered in _TRUTHY:
            return 1.0
        if lowered in _FALSY:
            return 0.0
        try:
            return float(value)
        except ValueError:
            return None
    return None


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
                attrs[sc.GEN_AI_EVALUATION_EXPLANATION] = policy.clean(score.explanation)
            if score.answer:
                attrs[sc.INSPECT_SCORE_ANSWER] = policy.clean(score.answer)
        results.append(attrs)
    return results
