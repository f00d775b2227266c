"""ToolEvent and SandboxEvent -> span attributes (per-event builders, pure)."""

from __future__ import annotations

from typing import Any

from .. import semconv as sc
from ..content import ContentPolicy


def tool_attributes(event: Any, policy: ContentPolicy) -> tuple[dict[str, Any], str | None]:
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
        sc.GEN_AI_TOOL_NAME: event.function,
        sc.GEN_AI_TOOL_CALL_ID: event.id,
        sc.GEN_AI_TOOL_TYPE: "function",
    }
    if event.uuid:
        attrs[sc.INSPECT_EVENT_UUID] = event.uuid
    if event.truncated:
        attrs[sc.INSPECT_TOOL_TRUNCATED] = True
    if event.agent:
        attrs[sc.INSPECT_TOOL_AGENT] = event.agent
    error = None
    if event.error is not None:
        attrs[sc.ERROR_TYPE] = event.error.type
        error = policy.clean(event.error.message)
        attrs[sc.INSPECT_TOOL_ERROR_MESSAGE] = error
    if policy.on_spans:
        attrs[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = policy.content_json(event.arguments)
        # A string result is plain text; anything else (content lists, numbers) is JSON.
        attrs[sc.GEN_AI_TOOL_CALL_RESULT] = (
            policy.content(event.result) if isinstance(event.result, str)
            else policy.content_json(_jsonable(event.result))
        )
    return attrs, error


def _jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if dump else value


def sandbox_attributes(event: Any, policy: ContentPolicy) -> dict[str, Any]:
    attrs: dict[str, Any] = {sc.INSPECT_SANDBOX_ACTION: event.action}
    if event.result is not None:
        attrs[sc.INSPECT_SANDBOX_RESULT] = event.result
    if policy.on_spans:
        target = event.cmd or event.file
        if target:
            attrs[sc.INSPECT_SANDBOX_CMD] = policy.content(target)
        if event.output:
            attrs[sc.INSPECT_SANDBOX_OUTPUT] = policy.content(event.output)
    return attrs
