"""ModelEvent -> `chat {model}` CLIENT span and its metric measure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import semconv as sc
from ..content import ContentPolicy, finish_reason
from ..conversation import Conversation, fit_call, resolve_attachments
from ..redaction import without_headers
from ._common import error_type, generate_config_attributes, split_model, to_ns, usage_attributes
from ._server import ModelEndpoints, base_url, server_attributes
from ._types import Kind, ModelCallMeasure, SpanData, SpanEventData

_NO_ENDPOINTS = ModelEndpoints()


def _response_model(response_model: str, model: str) -> str:
    # Providers answer with their own model name; mock and proxy providers echo Inspect's name.
    prefix = model.split("/", 1)[0] + "/"
    return split_model(response_model)[1] if response_model.startswith(prefix) else response_model


def provider_call_attributes(
    call: Any, attachments: Mapping[str, str], policy: ContentPolicy
) -> dict[str, Any]:
    """The provider's own request and response (Inspect's ModelEvent.call), opt-in: headers
    dropped, Inspect's ``attachment://`` references resolved (at sample end Inspect holds each
    call condensed: strings over 100 characters moved to the sample's attachments), content
    redacted, and the request's conversation fitted to the budget before it is serialised
    (``conversation.fit_call``: the work per call does not grow with the conversation)."""
    if call is None or not policy.raw_provider_call:
        return {}
    attrs = {sc.INSPECT_MODEL_CALL_REQUEST: fit_call(call.request, attachments, policy)}
    if call.response is not None:
        response = without_headers(resolve_attachments(call.response, attachments))
        attrs[sc.INSPECT_MODEL_CALL_RESPONSE] = policy.content_json(response)
    return attrs


def model_span(
    event: Any, trace_id: int, span_id: int, parent_span_id: int, policy: ContentPolicy,
    endpoints: ModelEndpoints = _NO_ENDPOINTS, attachments: Mapping[str, str] | None = None,
    conversation: Conversation | None = None,
) -> tuple[SpanData, ModelCallMeasure]:
    """``endpoints``: the task's model base URLs; ``attachments``: the sample's (for a
    ModelEvent.call condensed in memory); ``conversation``: the sample's messages converted so
    far (content capture: each message is converted and redacted once per sample)."""
    provider, request_model = split_model(event.model)
    output = event.output
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
        sc.GEN_AI_PROVIDER_NAME: provider,
        sc.GEN_AI_REQUEST_MODEL: request_model,
        sc.INSPECT_MODEL: event.model,
        **server_attributes(base_url(event.model, event.role, endpoints)),
    }
    if event.uuid:
        attrs[sc.INSPECT_EVENT_UUID] = event.uuid
    attrs.update(generate_config_attributes(event.config, policy))
    if output is not None:
        if output.model:
            attrs[sc.GEN_AI_RESPONSE_MODEL] = _response_model(output.model, event.model)
        if output.response_id:
            attrs[sc.GEN_AI_RESPONSE_ID] = output.response_id
        reasons = tuple(finish_reason(c.stop_reason) for c in output.choices)
        if reasons:
            attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
        attrs.update(usage_attributes(output.usage))
        if output.usage is not None and output.usage.total_cost is not None:
            attrs[sc.INSPECT_USAGE_COST] = output.usage.total_cost
    if event.role:
        attrs[sc.INSPECT_MODEL_ROLE] = event.role
    if event.retries:
        attrs[sc.INSPECT_MODEL_RETRIES] = event.retries
    if event.cache:
        attrs[sc.INSPECT_MODEL_CACHE] = event.cache

    error = event.error or (output.error if output is not None else None)
    events: tuple[SpanEventData, ...] = ()
    if error:
        attrs[sc.ERROR_TYPE] = error_type(error, "model_error")
    if event.error:  # the call raised: where it happened, with its traceback
        exception = {sc.EXCEPTION_TYPE: attrs[sc.ERROR_TYPE],
                     sc.EXCEPTION_MESSAGE: policy.clean(event.error)}
        if event.traceback:
            exception[sc.EXCEPTION_STACKTRACE] = policy.clean(event.traceback)
        events = (SpanEventData(sc.EVENT_ERROR, to_ns(event.completed) or to_ns(event.timestamp)
                                or 0, exception),)

    if policy.on_spans:
        conversation = conversation or Conversation(policy)
        system = conversation.system_instructions(event.input)
        if system:
            attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = system
        attrs[sc.GEN_AI_INPUT_MESSAGES] = conversation.input_messages(event.input)
        if output is not None and output.choices:
            attrs[sc.GEN_AI_OUTPUT_MESSAGES] = conversation.output_messages(output)
        if event.tools:
            attrs[sc.GEN_AI_TOOL_DEFINITIONS] = conversation.tool_definitions(event.tools)
        attrs.update(provider_call_attributes(event.call, attachments or {}, policy))

    start = to_ns(event.timestamp) or 0
    end = to_ns(event.completed)
    if end is None:
        duration = event.working_time or (output.time if output is not None else None) or 0.0
        end = start + int(duration * 1e9)
    span = SpanData(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        name=f"{sc.OP_CHAT} {request_model}",
        kind=Kind.CLIENT,
        start_ns=start,
        end_ns=max(end, start),
        attributes=attrs,
        events=events,
        error=policy.clean(error) if error else None,
    )
    measure_attrs = {
        k: attrs[k]
        for k in (
            sc.GEN_AI_OPERATION_NAME,
            sc.GEN_AI_PROVIDER_NAME,
            sc.GEN_AI_REQUEST_MODEL,
            sc.GEN_AI_RESPONSE_MODEL,
            sc.SERVER_ADDRESS,
            sc.SERVER_PORT,
            sc.ERROR_TYPE,
        )
        if k in attrs
    }
    measure = ModelCallMeasure(
        duration_s=(span.end_ns - span.start_ns) / 1e9,
        input_tokens=attrs.get(sc.GEN_AI_USAGE_INPUT_TOKENS),
        output_tokens=attrs.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS),
        attributes=measure_attrs,
    )
    return span, measure
