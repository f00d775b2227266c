"""EvalSample (with its transcript events) -> the sample trace, evaluation results and measures.

The live hook and the log replay both call :func:`map_sample` with a finished sample, so a sample
maps to the same spans whichever path sent it.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from typing import Any

from .. import ids
from .. import semconv as sc
from ..content import (
    ContentPolicy,
    message_to_semconv,
    output_messages,
    redact_mapping,
    split_system,
    text_of,
    to_json,
)
from ._common import error_type, model_attributes, to_ns, usage_attributes
from ._events import SPAN_EVENTS
from ._model import model_span
from ._score import evaluation_attributes
from ._types import (
    EvaluationResult,
    Kind,
    LinkData,
    ModelCallMeasure,
    SampleTelemetry,
    SpanData,
    SpanEventData,
    TaskContext,
)

# Inspect span types that are containers named after themselves.
_CONTAINER_TYPES = {"init", "solvers", "scorers"}


@dataclass
class _Span:
    """A span under construction (mutable only inside map_sample)."""

    span_id: int
    parent_span_id: int | None
    name: str
    start_ns: int
    end_ns: int | None = None
    kind: Kind = Kind.INTERNAL
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEventData] = field(default_factory=list)
    error: str | None = None
    inspect_type: str | None = None
    inspect_name: str = ""
    inspect_parent: str | None = None

    def freeze(self, trace_id: int, default_end: int) -> SpanData:
        end = self.end_ns if self.end_ns is not None else default_end
        return SpanData(
            trace_id=trace_id,
            span_id=self.span_id,
            parent_span_id=self.parent_span_id,
            name=self.name,
            kind=self.kind,
            start_ns=self.start_ns,
            end_ns=max(end, self.start_ns),
            attributes=dict(self.attributes),
            events=tuple(self.events),
            error=self.error,
        )


def sample_identity(sample: Any, ctx: TaskContext) -> dict[str, Any]:
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


def _event_key(event: Any, index: int) -> str:
    return f"event/{event.uuid}" if event.uuid else f"event#{index}"


def _inspect_span_name(span_type: str | None, name: str) -> str:
    if not span_type or span_type in _CONTAINER_TYPES or span_type == name:
        return name
    if span_type == "agent":
        return f"{sc.OP_INVOKE_AGENT} {name}"
    return f"{span_type} {name}"


def _tool_attributes(event: Any, policy: ContentPolicy) -> tuple[dict[str, Any], str | None]:
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
        attrs[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = policy.clean_json(event.arguments)
        # A string result is plain text; anything else (content lists, numbers) is JSON.
        attrs[sc.GEN_AI_TOOL_CALL_RESULT] = (
            policy.clean(event.result) if isinstance(event.result, str)
            else policy.clean_json(_jsonable(event.result))
        )
    return attrs, error


def _jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if dump else value


def _sandbox_attributes(event: Any, policy: ContentPolicy) -> dict[str, Any]:
    attrs: dict[str, Any] = {sc.INSPECT_SANDBOX_ACTION: event.action}
    if event.result is not None:
        attrs[sc.INSPECT_SANDBOX_RESULT] = event.result
    if policy.on_spans:
        target = event.cmd or event.file
        if target:
            attrs[sc.INSPECT_SANDBOX_CMD] = policy.clean(target)
        if event.output:
            attrs[sc.INSPECT_SANDBOX_OUTPUT] = policy.clean(event.output)
    return attrs


def _fold_handoffs(spans: dict[str, _Span]) -> dict[str, _Span]:
    """One span per handoff: Inspect wraps the handoff tool's [tool] span (the agent runs inside
    it) in a [handoff] span, and records the ToolEvent under the handoff's parent. The [tool]
    span takes the [handoff] span's place (its parent, its start and end, its other children) and
    becomes the handoff's ``execute_tool`` span. Returns folded Inspect span id -> that span, for
    the events recorded in the [handoff] span itself."""
    folded: dict[str, _Span] = {}
    for span in list(spans.values()):
        handoff = spans.get(span.inspect_parent or "")
        if span.inspect_type != "tool" or handoff is None or handoff.inspect_type != "handoff":
            continue
        handoff_id = span.inspect_parent or ""
        span.parent_span_id = handoff.parent_span_id
        span.inspect_parent = handoff.inspect_parent
        span.start_ns = min(span.start_ns, handoff.start_ns)
        if handoff.end_ns is not None:
            span.end_ns = max(span.end_ns or handoff.end_ns, handoff.end_ns)
        for other in spans.values():
            if other.parent_span_id == handoff.span_id:
                other.parent_span_id = span.span_id
        folded[handoff_id] = span
        del spans[handoff_id]
    return folded


def _sample_status(sample: Any) -> str:
    if sample.error is not None:
        return "error"
    if sample.limit is not None:
        return "limit"
    return "success"


def map_sample(sample: Any, ctx: TaskContext, policy: ContentPolicy) -> SampleTelemetry:
    """Map one finished sample x epoch to its trace (root first), results and measures."""
    uuid = sample_uuid(sample, ctx)
    trace_id = ids.sample_trace_id(uuid)
    root_id = ids.span_id(trace_id, "sample")
    events = list(sample.events or [])
    identity = sample_identity(sample, ctx)

    first_event = to_ns(events[0].timestamp) if events else None
    start = to_ns(sample.started_at) or first_event or 0
    end = to_ns(sample.completed_at)
    if end is None:
        last = max((to_ns(getattr(e, "completed", None) or e.timestamp) or 0 for e in events), default=0)
        end = max(last, start + int((sample.total_time or 0) * 1e9))

    root = _Span(span_id=root_id, parent_span_id=None, name=f"{sc.OP_INVOKE_AGENT} {ctx.task_name}",
                 start_ns=start, end_ns=end)

    # Pass 1: Inspect's span tree. Spans open before their events, and a parent before a child.
    spans: dict[str, _Span] = {}
    for event in events:
        if event.event == "span_begin":
            parent = spans.get(event.parent_id) if event.parent_id else None
            span = _Span(
                span_id=ids.span_id(trace_id, f"span/{event.id}"),
                parent_span_id=parent.span_id if parent else root_id,
                name=_inspect_span_name(event.type, event.name),
                start_ns=to_ns(event.timestamp) or start,
                inspect_type=event.type,
                inspect_name=event.name,
                inspect_parent=event.parent_id,
                attributes={sc.INSPECT_SPAN_ID: event.id, sc.INSPECT_SPAN_TYPE: event.type or ""},
            )
            if event.type == "agent":
                span.attributes[sc.GEN_AI_OPERATION_NAME] = sc.OP_INVOKE_AGENT
                span.attributes[sc.GEN_AI_AGENT_NAME] = event.name
            if event.type == "scorer":
                span.attributes[sc.INSPECT_SCORER_NAME] = event.name
                span.attributes[sc.INSPECT_SCORER_MODEL_GRADED] = False
            spans[event.id] = span
        elif event.event == "span_end" and event.id in spans:
            spans[event.id].end_ns = to_ns(event.timestamp)

    folded = _fold_handoffs(spans)

    # A ToolEvent's span_id is the PARENT of its [tool] span: match on (parent, function), in
    # order. Indexed, because long agent transcripts hold thousands of spans.
    open_tools: dict[tuple[str | None, str], deque[_Span]] = defaultdict(deque)
    for span in spans.values():
        if span.inspect_type == "tool":
            open_tools[(span.inspect_parent, span.inspect_name)].append(span)
    by_otel_id: dict[int, _Span] = {s.span_id: s for s in spans.values()}
    by_otel_id[root_id] = root
    extra: list[_Span] = []
    model_calls: list[ModelCallMeasure] = []
    model_spans: list[SpanData] = []
    tool_calls: list[dict[str, Any]] = []
    score_events: list[tuple[int, Any, _Span]] = []

    def enclosing(event: Any) -> _Span:
        if not event.span_id:
            return root
        return spans.get(event.span_id) or folded.get(event.span_id) or root

    # Pass 2: everything else, placed in its enclosing span.
    for index, event in enumerate(events):
        kind = event.event
        if kind == "model":
            parent = enclosing(event)
            span, measure = model_span(
                event, trace_id, ids.span_id(trace_id, _event_key(event, index)),
                parent.span_id, policy, ctx.endpoints, getattr(sample, "attachments", None),
            )
            model_spans.append(span)
            model_calls.append(measure)
        elif kind == "tool":
            attrs, error = _tool_attributes(event, policy)
            waiting = open_tools.get((event.span_id, event.function))
            target = waiting.popleft() if waiting else None
            if target is None:
                target = _Span(
                    span_id=ids.span_id(trace_id, _event_key(event, index)),
                    parent_span_id=enclosing(event).span_id,
                    name="",
                    start_ns=to_ns(event.timestamp) or start,
                    end_ns=to_ns(event.completed),
                )
                extra.append(target)
            target.name = f"{sc.OP_EXECUTE_TOOL} {event.function}"
            target.attributes.update(attrs)
            target.error = error
            tool_calls.append({k: attrs[k] for k in (sc.GEN_AI_TOOL_NAME, sc.ERROR_TYPE) if k in attrs})
        elif kind == "sandbox":
            sandbox_start = to_ns(event.timestamp) or start
            extra.append(_Span(
                span_id=ids.span_id(trace_id, _event_key(event, index)),
                parent_span_id=enclosing(event).span_id,
                name=f"sandbox {event.action}",
                start_ns=sandbox_start,
                end_ns=to_ns(event.completed) or sandbox_start,
                attributes=_sandbox_attributes(event, policy),
            ))
        elif kind == "score":
            score_events.append((index, event, enclosing(event)))
        elif kind in SPAN_EVENTS:
            name, mapper = SPAN_EVENTS[kind]
            enclosing(event).events.append(
                SpanEventData(name, to_ns(event.timestamp) or start, mapper(event, policy))
            )

    # A scorer that called a model is model-graded (an LLM judge).
    for span in model_spans:
        ancestor = by_otel_id.get(span.parent_span_id or 0)
        while ancestor is not None and ancestor.inspect_type != "scorer":
            ancestor = by_otel_id.get(ancestor.parent_span_id or 0)
        if ancestor is not None:
            ancestor.attributes[sc.INSPECT_SCORER_MODEL_GRADED] = True

    results: list[EvaluationResult] = []
    root_scores: dict[str, float] = {}
    final_results: set[tuple[str, int]] = set()
    for _, event, span in score_events:
        scorer = event.scorer or (span.inspect_name if span.inspect_type == "scorer" else "score")
        model_graded = bool(span.attributes.get(sc.INSPECT_SCORER_MODEL_GRADED, False))
        time_ns = to_ns(event.timestamp) or end
        shared = dict(scorer=scorer, score=event.score, intermediate=event.intermediate,
                      model_graded=model_graded, identity=identity,
                      scorer_span_hex=ids.span_id_hex(span.span_id), policy=policy)
        for attrs in evaluation_attributes(**shared, content=policy.on_spans):
            span.events.append(SpanEventData(sc.EVENT_EVALUATION_RESULT, time_ns, attrs))
            value = attrs.get(sc.GEN_AI_EVALUATION_SCORE_VALUE)
            if not event.intermediate:
                final_results.add((attrs[sc.GEN_AI_EVALUATION_NAME], span.span_id))
                if isinstance(value, float):
                    root_scores[attrs[sc.GEN_AI_EVALUATION_NAME]] = value
        for attrs in evaluation_attributes(**shared, content=policy.on_events):
            results.append(EvaluationResult(trace_id, span.span_id, time_ns, attrs))

    # The root: identity, outcome, usage and (opt-in) content of the whole sample.
    status = _sample_status(sample)
    index = ctx.sample_index(str(sample.id))
    root.attributes.update({
        sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT,
        sc.GEN_AI_AGENT_NAME: ctx.task_name,
        sc.GEN_AI_CONVERSATION_ID: uuid,
        sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_SAMPLE,
        **model_attributes(ctx.model),
        **identity,
        sc.INSPECT_SAMPLE_STATUS: status,
        sc.INSPECT_SAMPLE_RETRIES: len(sample.error_retries or []),
        sc.INSPECT_SAMPLE_MODEL_CALLS: len(model_spans),
        sc.INSPECT_SAMPLE_TOOL_CALLS: len(tool_calls),
        sc.INSPECT_SAMPLE_TOOL_ERRORS: sum(1 for t in tool_calls if sc.ERROR_TYPE in t),
        sc.INSPECT_SAMPLE_MODEL_ERRORS: sum(1 for m in model_spans if sc.ERROR_TYPE in m.attributes),
        sc.INSPECT_SAMPLE_EVALUATIONS: len(final_results),
        sc.INSPECT_SAMPLE_MESSAGE_COUNT: len(sample.messages or []),
    })
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
    for name, value in root_scores.items():
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
        _add_sample_content(root.attributes, sample, policy)

    link = LinkData(ids.run_trace_id(ctx.run_id), ids.task_span_id(ctx.run_id, ctx.eval_id))
    frozen = [replace(root.freeze(trace_id, end), links=(link,))]
    frozen += [s.freeze(trace_id, end) for s in spans.values()]
    frozen += [s.freeze(trace_id, end) for s in extra]
    frozen += model_spans
    return SampleTelemetry(
        spans=tuple(frozen),
        results=tuple(results),
        model_calls=tuple(model_calls),
        tool_calls=tuple(tool_calls),
        status=status,
    )


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


def _add_sample_content(attrs: dict[str, Any], sample: Any, policy: ContentPolicy) -> None:
    attrs[sc.INSPECT_SAMPLE_INPUT] = policy.clean(text_of(sample.input))
    attrs[sc.INSPECT_SAMPLE_TARGET] = policy.clean(text_of(sample.target))
    if isinstance(sample.input, str):
        messages = [{"role": "user", "parts": [{"type": "text", "content": sample.input}]}]
    else:
        _, messages = split_system(sample.input)
    attrs[sc.GEN_AI_INPUT_MESSAGES] = policy.clean_json(messages)
    output = getattr(sample, "output", None)
    if output is not None and output.choices:
        attrs[sc.INSPECT_SAMPLE_OUTPUT] = policy.clean(output.completion)
        attrs[sc.GEN_AI_OUTPUT_MESSAGES] = policy.clean_json(output_messages(output))
    if sample.messages:
        attrs[sc.INSPECT_SAMPLE_MESSAGES] = policy.clean_json(
            [message_to_semconv(m) for m in sample.messages]
        )

