"""What tells one eval from another in a list of runs: the task, the model and Inspect's eval
tags, as one short name (``arith_agent · gpt-4o · candidate-v2``). Used by the receiver's run
names and by ``compare``'s report and comparison run."""

from __future__ import annotations

from collections.abc import Iterable

NAME_SEPARATOR = " \u00b7 "


def short_model(model: str) -> str:
    """The model without its provider (``openai/gpt-4o`` -> ``gpt-4o``)."""
    return model.split("/", 1)[-1] if "/" in model else model


def labelled_name(base: str, models: Iterable[str] = (), tags: Iterable[str] = ()) -> str:
    """``base · model · tag, tag`` (parts without values left out)."""
    models, tags = [m for m in models if m], [t for t in tags if t]
    parts = [base]
    if models:
        parts.append(", ".join(short_model(m) for m in models))
    if tags:
        parts.append(", ".join(tags))
    return NAME_SEPARATOR.join(parts)
