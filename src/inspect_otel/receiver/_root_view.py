"""What a sample's or run's root span shows in MLflow: its request and response (the Traces
table's columns, the side-by-side comparison's pairing), its conversation, its trace tags.

MLflow's comparison of two evaluation runs pairs the traces of both runs by their request (the
preview MLflow cuts from the root's inputs), one row per pair. A sample's request is therefore
the same in every run of the task and different for each epoch: ``{"sample_id", "epoch",
"input"}`` (the input only with content capture; without it, the task). Sample traces get no
MLflow session: with sessions, MLflow 3.17 groups the comparison by session and its grouped
rows list their cells in another column order than the header (see docs/receiver.md).

With content capture the root opens on the whole conversation (``_chat.py``): its system and
user messages as the inputs' chat, the agent's turns as the outputs ``{"messages": [...]}``,
whose last assistant message is the Traces table's response.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from inspect_otel import semconv as sc

from . import _chat
from ._mlflow_names import (
    SPAN_INPUTS,
    SPAN_OUTPUTS,
    TAG_VALUE_MAX,
    TRACE_TAG_PREFIX,
    mlflow_text,
)
from ._run_tags import label_tags, texts
from ._values import as_text, jsonable, no_nul

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


# A sample's request: (attribute, key), in this order (the Traces table shows its start).
SAMPLE_REQUEST: tuple[tuple[str, str], ...] = (
    (sc.INSPECT_SAMPLE_ID, "sample_id"),
    (sc.INSPECT_SAMPLE_EPOCH, "epoch"),
)


SAMPLE_REQUEST_CONTENT = (sc.INSPECT_SAMPLE_INPUT, "input")


SAMPLE_REQUEST_NO_CONTENT = (sc.INSPECT_TASK_NAME, "task")


RUN_REQUEST: tuple[tuple[str, str], ...] = (
    (sc.INSPECT_TASK_NAME, "task"),
    (sc.INSPECT_RUN_TASK_NAMES, "tasks"),
    (sc.INSPECT_RUN_ID, "run_id"),
)


# The response when there is no conversation: the outcome (and the scores).
RESPONSE_SUMMARY: tuple[tuple[str, str], ...] = (
    (sc.INSPECT_SAMPLE_STATUS, "status"),
    (sc.INSPECT_TASK_STATUS, "status"),
    (sc.INSPECT_RUN_STATUS, "status"),
    (sc.INSPECT_ERROR_MESSAGE, "error"),
    (sc.INSPECT_SAMPLE_TOTAL_TIME, "total_time"),
)


# Span attributes a sample root does not take to MLflow, beside its usage (_forward.py):
# MLflow makes gen_ai.conversation.id (the sample's uuid) the trace's session, and a session
# makes MLflow 3.17's comparison group its rows by session (module docstring).
SAMPLE_ROOT_ATTRIBUTES_NOT_FORWARDED = frozenset({sc.GEN_AI_CONVERSATION_ID})


def _dumps(value: Any, sort_keys: bool = False) -> str:
    """JSON without NUL (MLflow copies previews into text columns, where an escaped NUL is a NUL
    again); only a text that has one is rebuilt."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=sort_keys, default=jsonable)
    if "\\u0000" in text:
        text = json.dumps(no_nul(value), ensure_ascii=False, sort_keys=sort_keys, default=jsonable)
    return text


def _pick(attrs: Mapping[str, Any], table: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, key in table:
        if attrs.get(attr) not in (None, "") and key not in out:
            v = attrs[attr]
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def sample_request(attrs: Mapping[str, Any]) -> str:
    """The sample's request (JSON): the same in every run of its task, one per epoch."""
    request = _pick(attrs, SAMPLE_REQUEST)
    attr, key = SAMPLE_REQUEST_CONTENT
    if attrs.get(attr):
        request[key] = as_text(attrs[attr])
    else:
        request.update(_pick(attrs, (SAMPLE_REQUEST_NO_CONTENT,)))
    return _dumps(request)


def _response_summary(attrs: Mapping[str, Any]) -> str:
    summary = _pick(attrs, RESPONSE_SUMMARY)
    scores = {k[len(sc.INSPECT_SAMPLE_SCORE_PREFIX):]: v for k, v in sorted(attrs.items())
              if k.startswith(sc.INSPECT_SAMPLE_SCORE_PREFIX)}
    if scores:
        summary["scores"] = scores
    return _dumps(summary, sort_keys=True)


def root_io(kind: Any, attrs: Mapping[str, Any]) -> dict[str, str]:
    """``mlflow.spanInputs``, ``mlflow.spanOutputs`` and (with the conversation)
    ``mlflow.chat.messages`` of a sample or run root; what the sender set itself is kept."""
    out: dict[str, str] = {}
    if kind == sc.SPAN_KIND_SAMPLE:
        out[SPAN_INPUTS] = sample_request(attrs)
        conversation = _chat.conversation(attrs.get(sc.INSPECT_SAMPLE_MESSAGES))
        if conversation is not None:
            out[_chat.CHAT_MESSAGES] = _dumps(conversation.messages)
            if conversation.turns:
                out[SPAN_OUTPUTS] = _dumps({"messages": conversation.turns})
        if SPAN_OUTPUTS not in out:
            content = attrs.get(sc.INSPECT_SAMPLE_OUTPUT) or attrs.get(sc.GEN_AI_OUTPUT_MESSAGES)
            out[SPAN_OUTPUTS] = as_text(no_nul(content)) if content else _response_summary(attrs)
    else:
        out[SPAN_INPUTS] = _dumps(_pick(attrs, RUN_REQUEST), sort_keys=True)
        out[SPAN_OUTPUTS] = _response_summary(attrs)
    return {k: v for k, v in out.items() if k not in attrs}


def label_trace_tags(tags: Any) -> dict[str, str]:
    """Inspect's eval tags as trace tags, as on the task's run: one ``inspect.tag.<label>`` per
    tag (``tags.`inspect.tag.baseline` = 'true'`` finds the traces) and all of them in
    ``inspect.tags``."""
    return label_tags(texts(tags), None)


def root_trace_tags(attrs: Mapping[str, Any]) -> dict[str, str]:
    """The trace tags of a root (as ``mlflow.traceTag.*`` attributes): Inspect's ids, and the
    eval tags when the root carries them (``inspect.task.tags``)."""
    tags = {tag: mlflow_text(as_text(attrs[attr]), TAG_VALUE_MAX)
            for attr, tag in TRACE_TAGS if attrs.get(attr) not in (None, "")}
    tags.update(label_trace_tags(attrs.get(sc.INSPECT_TASK_TAGS)))
    return {TRACE_TAG_PREFIX + k: v for k, v in tags.items() if TRACE_TAG_PREFIX + k not in attrs}

