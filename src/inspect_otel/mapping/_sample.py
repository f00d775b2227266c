"""EvalSample -> the sample trace (root and all), evaluation results and measures.

The one mapping driver is :class:`~._stream.SampleMapper`: the live hook feeds it events as they
happen, :func:`map_sample` (the log replay) feeds it a finished sample's events in order. Both end
with :func:`finish_sample`, so a sample maps to the same spans whichever path sent it.
"""

from __future__ import annotations

import math
from typing import Any

from .. import semconv as sc
from ..content import ContentPolicy, redact_mapping, text_of
from ..conversation import Conversation
from ._common import error_type, model_attributes, to_ns, usage_attributes
from ._stream import SampleMapper, with_link
from ._types import EvaluationResult, SampleTelemetry, SpanData, SpanEventData, TaskContext


def sample_identity(sample: Any, ctx: TaskContext) -> dict[str, Any]:
    """Identity attributes of a sample x epoch (an EvalSample or Inspect's EvalSampleSummary)."""
    identity: dict[str, Any] = {
        sc.INSPECT_RUN_ID: ctx.run_id,
        sc.INSPECT_EVAL_ID: ctx.eval_id,
        sc.INSPECT_TASK_NAME: ctx.task_name,
        sc.INSPECT_SAMPLE_ID: str(sample.id),
        sc.INSPECT_SAMPLE_EPOCH: int(sample.epoch),
        sc.INSPECT_SAMPLE_UUID: sample_uuid(sample, ctx),
    }
    if ctx.eval_set_id:
        identity[sc.INSPECT_EVAL_SET_ID] = ctx.eval_set_id
    return identity


def sample_uuid(sample: Any, ctx: TaskContext) -> str:
    # Logs written before Inspect had sample uuids: a stable stand-in from the log's own ids.
    return sample.uuid or f"{ctx.eval_id}/{sample.id}/{sample.epoch}"


def _sample_status(sample: Any) -> str:
    if sample.error is not None:
        return "error"
    if sample.limit is not None:
        return "limit"
    return "success"


def _sample_times(sample: Any) -> tuple[int, int]:
    events = sample.events or []
    first_event = to_ns(events[0].timestamp) if events else None
    start = to_ns(sample.started_at) or first_event or 0
    end = to_ns(sample.completed_at)
    if end is None:
        last = max((to_ns(getattr(e, "completed", None) or e.timestamp) or 0 for e in events),
                   default=0)
        end = max(last, start + int((sample.total_time or 0) * 1e9))
    return start, end


def sample_mapper(sample: Any, ctx: TaskContext, policy: ContentPolicy) -> SampleMapper:
    """A mapper for a finished sample read from a log (its final attempt)."""
    start, end = _sample_times(sample)
    mapper = SampleMapper(
        ctx, policy, identity=sample_identity(sample, ctx), uuid=sample_uuid(sample, ctx),
        start_ns=start, end_ns=end, attempt=len(sample.error_retries or []) + 1, live=False,
    )
    mapper.attachments = getattr(sample, "attachments", None)
    return mapper


def map_sample(sample: Any, ctx: TaskContext, policy: ContentPolicy) -> SampleTelemetry:
    """Map one finished sample x epoch to its trace (root first), results and measures."""
    mapper = sample_mapper(sample, ctx, policy)
    spans: list[SpanData] = []
    results: list[EvaluationResult] = []
    for index, event in enumerate(sample.events or []):
        done = mapper.feed(event, index)
        if done:
            spans.extend(done.spans)
            results.extend(done.results)
    final = finish_sample(mapper, sample)
    return SampleTelemetry(
        spans=(final.spans[0], *spans, *final.spans[1:]),
        results=(*results, *final.results),
        model_calls=final.model_calls,
        tool_calls=final.tool_calls,
        status=final.status,
    )


def finish_sample(mapper: SampleMapper, sample: Any) -> SampleTelemetry:
    """The end of a sample: events of its transcript the mapper has not mapped yet (live: the
    ``init`` span, events whose delivery was cut short), then the spans still open and the root.
    ``spans[0]`` is the root; model_calls and tool_calls are the final attempt's."""
    spans: list[SpanData] = []
    results: list[EvaluationResult] = []
    if mapper.live:
        mapper.log_order = True
        mapper.attachments = getattr(sample, "attachments", None)
        for index, event in enumerate(sample.events or []):
            done = mapper.feed(event, index)
            if done:
                spans.extend(done.spans)
                results.extend(done.results)
    _, end = _sample_times(sample)
    spans.extend(mapper.finish_spans(end))
    root, status = _root(mapper, sample, end)
    a = mapper.attempt
    return SampleTelemetry(
        spans=(root, *spans),
        results=tuple(results),
        model_calls=tuple(a.model_calls),
        tool_calls=tuple(a.tool_calls),
        status=status,
    )


def abandon_sample(mapper: SampleMapper, end_ns: int, status: str = "cancelled") -> SampleTelemetry:
    """A sample that never reached ``on_sample_end`` (its task was torn down): what it sent
    stays, the spans still open end now, and the root ends with ``status`` and what is known."""
    spans = mapper.finish_spans(end_ns)
    a, root = mapper.attempt, mapper.attempt.root
    root.end_ns = end_ns
    root.error = f"sample {status}"
    root.attributes.update(root_attributes(mapper, status, retries=a.number - 1))
    root.attributes[sc.ERROR_TYPE] = status
    root_span = with_link(root.freeze(mapper.trace_id, end_ns), mapper.task_link())
    return SampleTelemetry(spans=(root_span, *spans), results=(), model_calls=tuple(a.model_calls),
                           tool_calls=tuple(a.tool_calls), status=status)


def root_attributes(mapper: SampleMapper, status: str, retries: int) -> dict[str, Any]:
    """What every sample root carries, finished or abandoned: its identity and the outcome of
    its final attempt as the mapper knows it (the one builder of both roots)."""
    a = mapper.attempt
    tags = {sc.INSPECT_TASK_TAGS: mapper.ctx.tags} if mapper.ctx.tags else {}
    return {
        **tags,
        sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT,
        sc.GEN_AI_AGENT_NAME: mapper.ctx.task_name,
        sc.GEN_AI_CONVERSATION_ID: mapper.uuid,
        sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_SAMPLE,
        **model_attributes(mapper.ctx.model),
        **mapper.identity,
        sc.INSPECT_SAMPLE_STATUS: status,
        sc.INSPECT_SAMPLE_RETRIES: retries,
        sc.INSPECT_SAMPLE_MODEL_CALLS: len(a.model_calls),
        sc.INSPECT_SAMPLE_TOOL_CALLS: len(a.tool_calls),
        sc.INSPECT_SAMPLE_TOOL_ERRORS: sum(1 for t in a.tool_calls if sc.ERROR_TYPE in t),
        sc.INSPECT_SAMPLE_MODEL_ERRORS: a.model_errors,
        sc.INSPECT_SAMPLE_EVALUATIONS: len(a.final_results),
    }


def _root(mapper: SampleMapper, sample: Any, end: int) -> tuple[SpanData, str]:
    """The root: identity, outcome, usage and (opt-in) content of the whole sample."""
    ctx, policy, a = mapper.ctx, mapper.policy, mapper.attempt
    root = a.root
    start, _ = _sample_times(sample)
    root.start_ns, root.end_ns = start, end
    status = _sample_status(sample)
    index = ctx.sample_index(str(sample.id))
    root.attributes.update(root_attributes(mapper, status,
                                           retries=len(sample.error_retries or [])))
    root.attributes[sc.INSPECT_SAMPLE_MESSAGE_COUNT] = len(sample.messages or [])
    if index is not None:
        root.attributes[sc.INSPECT_SAMPLE_INDEX] = index
        root.attributes[sc.INSPECT_SAMPLE_ORDINAL] = (
            (int(sample.epoch) - 1) * len(ctx.sample_ids) + index
        )
    if sample.total_time is not None:
        root.attributes[sc.INSPECT_SAMPLE_TOTAL_TIME] = float(sample.total_time)
    if sample.working_time is not None:
        root.attributes[sc.INSPECT_SAMPLE_WORKING_TIME] = float(sample.working_time)
    _add_usage(root.attributes, sample.model_usage or {})
    for name, value in a.root_scores.items():
        root.attributes[sc.INSPECT_SAMPLE_SCORE_PREFIX + name] = value
    if sample.limit is not None:
        root.attributes[sc.INSPECT_SAMPLE_LIMIT_TYPE] = sample.limit.type
        root.attributes[sc.INSPECT_SAMPLE_LIMIT_VALUE] = float(sample.limit.limit)
    if sample.error is not None:
        root.attributes[sc.ERROR_TYPE] = error_type(sample.error.message, "sample_error")
        root.error = policy.clean(sample.error.message)
        root.attributes[sc.INSPECT_ERROR_MESSAGE] = root.error
    for attempt, retry in enumerate(sample.error_retries or [], start=1):
        root.events.append(SpanEventData(sc.EVENT_SAMPLE_RETRY, start, {
            sc.INSPECT_RETRY_ATTEMPT: attempt,
            sc.EXCEPTION_TYPE: error_type(retry.message, "sample_error"),
            sc.EXCEPTION_MESSAGE: policy.clean(retry.message),
        }))
    _add_metadata(root.attributes, getattr(sample, "metadata", None) or {}, policy)
    if policy.on_spans:
        _add_sample_content(root.attributes, sample, mapper.conversation)
    return with_link(root.freeze(mapper.trace_id, end), mapper.task_link()), status


def _add_usage(attrs: dict[str, Any], model_usage: dict[str, Any]) -> None:
    totals: dict[str, int] = {}
    total_tokens = 0
    cost: float | None = None
    for usage in model_usage.values():
        for key, value in usage_attributes(usage).items():
            totals[key] = totals.get(key, 0) + value
        total_tokens += usage.total_tokens
        if usage.total_cost is not None:
            cost = (cost or 0.0) + usage.total_cost
    attrs.update(totals)
    attrs[sc.INSPECT_SAMPLE_TOTAL_TOKENS] = total_tokens
    if cost is not None:
        attrs[sc.INSPECT_SAMPLE_COST] = cost


_INT64 = range(-(2**63), 2**63)


def _add_metadata(attrs: dict[str, Any], metadata: dict[str, Any], policy: ContentPolicy) -> None:
    """Scalar sample metadata (a cluster key, a category): every key under content capture on
    spans, otherwise only the keys the user opted in. Secret-looking keys and values redacted."""
    for key, value in redact_mapping(metadata, policy).items():
        if not policy.on_spans and key not in policy.metadata_keys:
            continue
        if isinstance(value, str):
            attrs[sc.INSPECT_SAMPLE_METADATA_PREFIX + key] = policy.truncate(value)
        elif isinstance(value, bool) or (isinstance(value, int) and value in _INT64):
            attrs[sc.INSPECT_SAMPLE_METADATA_PREFIX + key] = value
        elif isinstance(value, float) and math.isfinite(value):
            attrs[sc.INSPECT_SAMPLE_METADATA_PREFIX + key] = value


def _add_sample_content(attrs: dict[str, Any], sample: Any, conversation: Conversation) -> None:
    """The sample's input, target, output and whole conversation (system messages included),
    fitted to the budget like a chat span's (``conversation.py``)."""
    policy = conversation.policy
    attrs[sc.INSPECT_SAMPLE_INPUT] = policy.content(text_of(sample.input))
    attrs[sc.INSPECT_SAMPLE_TARGET] = policy.content(text_of(sample.target))
    if isinstance(sample.input, str):
        attrs[sc.GEN_AI_INPUT_MESSAGES] = policy.content_json(
            [{"role": "user", "parts": [{"type": "text", "content": sample.input}]}])
    else:
        attrs[sc.GEN_AI_INPUT_MESSAGES] = conversation.input_messages(sample.input)
    output = getattr(sample, "output", None)
    if output is not None and output.choices:
        attrs[sc.INSPECT_SAMPLE_OUTPUT] = policy.content(output.completion)
        attrs[sc.GEN_AI_OUTPUT_MESSAGES] = conversation.output_messages(output)
    if sample.messages:
        attrs[sc.INSPECT_SAMPLE_MESSAGES] = conversation.input_messages(
            sample.messages, keep_system=True)

