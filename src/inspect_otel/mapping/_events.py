"""Transcript events that become span events on their enclosing span (mapping as a table)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .. import semconv as sc
from ..content import ContentPolicy
from ._common import error_type

SpanEventMapper = Callable[[Any, ContentPolicy], dict[str, Any]]


def _approval(event: Any, policy: ContentPolicy) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.INSPECT_APPROVAL_DECISION: event.decision,
        sc.INSPECT_APPROVAL_APPROVER: event.approver,
        sc.GEN_AI_TOOL_NAME: event.call.function,
        sc.GEN_AI_TOOL_CALL_ID: event.call.id,
    }
    if policy.on_spans and event.explanation:
        attrs[sc.INSPECT_APPROVAL_EXPLANATION] = policy.content(event.explanation)
    return attrs


def _limit(event: Any, policy: ContentPolicy) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.INSPECT_LIMIT_TYPE: event.type,
        sc.INSPECT_MESSAGE: policy.clean(event.message),
    }
    if event.limit is not None:
        attrs[sc.INSPECT_LIMIT_VALUE] = float(event.limit)
    return attrs


def exception_attributes(error: Any, policy: ContentPolicy) -> dict[str, Any]:
    """An ``exception`` event's attributes from Inspect's EvalError: type, message, traceback
    (errors are metadata: redacted by the metadata rules, with or without content capture)."""
    attrs: dict[str, Any] = {
        sc.EXCEPTION_TYPE: error_type(error.message, "Error"),
        sc.EXCEPTION_MESSAGE: policy.clean(error.message),
    }
    if getattr(error, "traceback", None):
        attrs[sc.EXCEPTION_STACKTRACE] = policy.clean(error.traceback)
    return attrs


def _error(event: Any, policy: ContentPolicy) -> dict[str, Any]:
    return exception_attributes(event.error, policy)


def _info(event: Any, policy: ContentPolicy) -> dict[str, Any]:
    attrs: dict[str, Any] = {"inspect.info.source": event.source or ""}
    if policy.on_spans:
        attrs[sc.INSPECT_MESSAGE] = policy.clean_json(event.data)
    return attrs


def _logger(event: Any, policy: ContentPolicy) -> dict[str, Any]:
    return {
        "inspect.logger.level": event.message.level,
        "inspect.logger.name": event.message.name or "",
        sc.INSPECT_MESSAGE: policy.clean(event.message.message),
    }


def _input(event: Any, policy: ContentPolicy) -> dict[str, Any]:
    return {sc.INSPECT_MESSAGE: policy.content(event.input)} if policy.on_spans else {}


def _interrupt(event: Any, policy: ContentPolicy) -> dict[str, Any]:
    return {sc.INSPECT_MESSAGE: policy.clean(getattr(event, "message", "") or "")}


def _compaction(event: Any, policy: ContentPolicy) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for field in ("type", "tokens_before", "tokens_after", "source"):
        value = getattr(event, field, None)
        if isinstance(value, (str, int, float)):
            attrs[f"inspect.compaction.{field}"] = value
    return attrs


# Inspect event discriminator -> (span event name, attribute mapper).
SPAN_EVENTS: Mapping[str, tuple[str, SpanEventMapper]] = {
    "approval": (sc.EVENT_APPROVAL, _approval),
    "sample_limit": (sc.EVENT_SAMPLE_LIMIT, _limit),
    "error": (sc.EVENT_ERROR, _error),
    "info": (sc.EVENT_INFO, _info),
    "logger": (sc.EVENT_LOGGER, _logger),
    "input": (sc.EVENT_INPUT, _input),
    "interrupt": (sc.EVENT_INTERRUPT, _interrupt),
    "compaction": (sc.EVENT_COMPACTION, _compaction),
}
