"""Traces (the neutral span model) -> ``inspect_scout.Transcript``. Pure: no I/O.

Two readings:

- **Inspect sample traces** (a root with ``inspect.span.kind = sample``): one transcript per
  sample x epoch with the id, fields, messages and events Scout itself gives that sample when it
  reads the ``.eval`` log. Inspect's span tree becomes span begin/end events, ``chat`` spans model
  events, ``execute_tool`` spans tool events, sandbox spans sandbox events, and span events
  (``gen_ai.evaluation.result``, ``exception``, ``inspect.*``) score, error, logger, info, limit
  and approval events, each where Inspect recorded it.
- **Other GenAI producers** (no ``inspect.*`` attributes): one transcript per trace from the
  GenAI semantic conventions alone: model, tool and agent events, evaluation results as scores.

Run and task traces are context, not transcripts: a task span (found by the reader) adds the
task's plan, generate config, args and log location to its samples.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, get_args

from inspect_ai.event import (
    ApprovalEvent,
    ErrorEvent,
    Event,
    InfoEvent,
    LoggerEvent,
    LoggingMessage,
    ModelEvent,
    SampleLimitEvent,
    SandboxEvent,
    ScoreEvent,
    SpanBeginEvent,
    SpanEndEvent,
    ToolEvent,
)
from inspect_ai.log import EvalError
from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessage,
    GenerateConfig,
    ModelCall,
    ModelOutput,
    ModelUsage,
)
from inspect_ai.scorer import Score
from inspect_ai.tool import ToolCall, ToolInfo, ToolParams
from inspect_scout import Transcript

from .. import semconv as sc
from ..mapping._common import GENERATE_CONFIG_ATTRIBUTES
from ._messages import (
    json_value,
    messages_from_semconv,
    output_choices,
    stable_id,
    system_messages,
    text_value,
    tool_error,
)
from ._conversation import rebuild, was_cut
from ._spans import Span, SpanEvent, TaskInfo, Trace

SOURCE_OTLP = "otlp"
SOURCE_MLFLOW = "mlflow"

# gen_ai.operation.name -> what the span becomes (GenAI semconv v1.41 operation names).
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
TOOL_OPERATIONS = frozenset({sc.OP_EXECUTE_TOOL})
AGENT_OPERATIONS = frozenset({sc.OP_INVOKE_AGENT, "create_agent"})
WORKFLOW_OPERATIONS = frozenset({sc.OP_INVOKE_WORKFLOW})

# semconv finish reason -> Inspect stop reason (the inverse of content.FINISH_REASONS).
STOP_REASONS: Mapping[str, str] = {
    "stop": "stop",
    "length": "max_tokens",
    "tool_call": "tool_calls",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "max_tokens": "max_tokens",
    "model_length": "model_length",
}
_GENERATE_CONFIG_KEYS: Mapping[str, str] = {v: k for k, v in GENERATE_CONFIG_ATTRIBUTES.items()}
_LIMIT_TYPES = set(get_args(SampleLimitEvent.model_fields["type"].annotation))
_APPROVAL_DECISIONS = set(get_args(ApprovalEvent.model_fields["decision"].annotation))
_SANDBOX_ACTIONS = set(get_args(SandboxEvent.model_fields["action"].annotation))
_CONTAINER_TYPES = {"init", "solvers", "scorers"}  # Inspect spans named after their type
# Inspect span type -> the attribute that holds its own name (others: the span name less a prefix)
_NAME_ATTRIBUTES: Mapping[str, str] = {
    "agent": sc.GEN_AI_AGENT_NAME, "scorer": sc.INSPECT_SCORER_NAME, "tool": sc.GEN_AI_TOOL_NAME,
}


# --- small helpers ---------------------------------------------------------------------------------

def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else text_value(value)


def _model_name(attrs: Mapping[str, Any]) -> str | None:
    return _str(attrs.get(sc.INSPECT_MODEL)) or _str(attrs.get(sc.GEN_AI_RESPONSE_MODEL)) or _str(
        attrs.get(sc.GEN_AI_REQUEST_MODEL))


def _usage(attrs: Mapping[str, Any]) -> ModelUsage | None:
    """gen_ai.usage.* -> Inspect usage (semconv input tokens include cache reads and writes)."""
    semconv_in = _int(attrs.get(sc.GEN_AI_USAGE_INPUT_TOKENS))
    out = _int(attrs.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS))
    if semconv_in is None and out is None:
        return None
    read = _int(attrs.get(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS))
    write = _int(attrs.get(sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS))
    return ModelUsage(
        input_tokens=max((semconv_in or 0) - (read or 0) - (write or 0), 0),
        output_tokens=out or 0,
        total_tokens=(semconv_in or 0) + (out or 0),
        input_tokens_cache_read=read, input_tokens_cache_write=write,
        reasoning_tokens=_int(attrs.get(sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS)),
        total_cost=_float(attrs.get(sc.INSPECT_USAGE_COST)),
    )


def _config(attrs: Mapping[str, Any]) -> GenerateConfig:
    """gen_ai.request.* and inspect.generate_config.* -> GenerateConfig (unknown keys dropped)."""
    values: dict[str, Any] = {}
    for name, value in attrs.items():
        key = _GENERATE_CONFIG_KEYS.get(name)
        if key is None and name.startswith(sc.INSPECT_GENERATE_CONFIG_PREFIX):
            key = name[len(sc.INSPECT_GENERATE_CONFIG_PREFIX):]
        if key is None or key not in GenerateConfig.model_fields:
            continue
        if isinstance(value, str) and value[:1] in ("{", "["):
            value = json_value(value)
        try:
            GenerateConfig.model_validate({key: value})
        except ValueError:
            continue
        values[key] = list(value) if isinstance(value, tuple) else value
    choices = _int(attrs.get(sc.GEN_AI_REQUEST_CHOICE_COUNT))
    if choices:
        values["num_choices"] = choices
    return GenerateConfig.model_validate(values)


def _tools(value: Any) -> list[ToolInfo]:
    tools = []
    for item in json_value(value) or []:
        if not isinstance(item, Mapping) or not item.get("name"):
            continue
        try:
            params = ToolParams.model_validate(item.get("parameters") or {})
        except ValueError:
            params = ToolParams()
        tools.append(ToolInfo(name=str(item["name"]), description=str(item.get("description") or ""),
                              parameters=params))
    return tools


def _tool_result(value: Any) -> Any:
    """gen_ai.tool.call.result: text, or JSON of Inspect content (images, ...)."""
    if value is None:
        return ""
    if isinstance(value, str) and not value.startswith("["):
        return value
    decoded = json_value(value)
    if isinstance(decoded, list) and decoded and all(
            isinstance(i, Mapping) and "type" in i for i in decoded):
        from pydantic import TypeAdapter

        from inspect_ai.model import Content

        try:
            return TypeAdapter(list[Content]).validate_python(decoded)
        except ValueError:
            pass
    return text_value(value)


# --- the span tree ---------------------------------------------------------------------------------

@dataclass
class _Node:
    span: Span
    children: list[_Node] = field(default_factory=list)
    extra_events: list[SpanEvent] = field(default_factory=list)

    @property
    def attrs(self) -> Mapping[str, Any]:
        return self.span.attributes

    def events(self) -> list[SpanEvent]:
        return list(self.span.events) + self.extra_events


def _tree(trace: Trace, root: Span) -> _Node:
    nodes = {s.span_id: _Node(s) for s in trace.spans}
    top = nodes[root.span_id]
    for node in nodes.values():
        if node is top:
            continue
        parent = nodes.get(node.span.parent_id or "")
        (parent or top).children.append(node)  # orphans (a lost parent) hang under the root
    retries = _int(root.attributes.get(sc.INSPECT_SAMPLE_RETRIES))
    if retries:
        # Live export keeps a retried sample's failed attempts in its trace (their top-level
        # spans name their attempt); a transcript, like the log, is the final attempt.
        top.children = [c for c in top.children
                        if _int(c.attrs.get(sc.INSPECT_SAMPLE_ATTEMPT)) in (None, retries + 1)]
    for node in nodes.values():
        node.children.sort(key=lambda n: (n.span.start_ns, n.span.end_ns, n.span.span_id))
    # Evaluation results usually arrive twice (span event and log record); the log records
    # stand in only when a trace has no span events of them (e.g. dropped on the way).
    has_result_events = any(e.name == sc.EVENT_EVALUATION_RESULT
                            for s in trace.spans for e in s.events)
    if not has_result_events:
        for log in trace.logs:
            target = nodes.get(str(log.attributes.get(sc.INSPECT_SCORE_SPAN_ID) or "")) \
                or nodes.get(log.span_id) or top
            target.extra_events.append(SpanEvent(log.event_name, log.time_ns, log.attributes))
    return top


def _root(trace: Trace) -> Span | None:
    for span in trace.spans:
        if span.attributes.get(sc.INSPECT_SPAN_KIND) == sc.SPAN_KIND_SAMPLE:
            return span
    return None


def trace_kind(trace: Trace) -> str | None:
    """``sample`` (an Inspect sample), ``context`` (an Inspect run/task trace), ``genai`` (another
    producer's GenAI trace) or None (nothing a transcript can be made of)."""
    if _root(trace) is not None:
        return "sample"
    if any(s.attributes.get(sc.INSPECT_SPAN_KIND) in (sc.SPAN_KIND_RUN, sc.SPAN_KIND_TASK)
           for s in trace.spans):
        return "context"
    if any(s.attributes.get(sc.GEN_AI_OPERATION_NAME) or s.attributes.get(sc.GEN_AI_TOOL_NAME)
           for s in trace.spans):
        return "genai"
    return None


def transcript_id(trace: Trace) -> str | None:
    """The id the transcript of ``trace`` will have (cheap: for skipping known transcripts)."""
    kind = trace_kind(trace)
    if kind == "sample":
        root = _root(trace)
        assert root is not None
        return _str(root.attributes.get(sc.INSPECT_SAMPLE_UUID)) or trace.trace_id
    return trace.trace_id if kind == "genai" else None


# --- events ----------------------------------------------------------------------------------------

@dataclass
class _Context:
    """Per-transcript state while events are built."""

    trace_id: str
    start_ns: int
    target: str | None = None
    scores: dict[str, Score] = field(default_factory=dict)  # final scores in scorer order
    model_events: list[tuple[ModelEvent, bool]] = field(default_factory=list)  # (event, in scorer)
    cut_inputs: set[int] = field(default_factory=set)  # id() of model events whose input was fitted

    def working_start(self, ns: int) -> float:
        return max(ns - self.start_ns, 0) / 1e9


def _inspect_span_name(span: Span) -> str:
    """Inspect's own span name (the hook prefixes the type: ``solver generate``)."""
    attrs = span.attributes
    kind = _str(attrs.get(sc.INSPECT_SPAN_TYPE))
    name_attribute = _NAME_ATTRIBUTES.get(kind or "")
    if name_attribute and attrs.get(name_attribute):
        return text_value(attrs[name_attribute])
    if kind and kind not in _CONTAINER_TYPES and span.name.startswith(f"{kind} "):
        return span.name[len(kind) + 1:]
    return span.name


def _model_call(attrs: Mapping[str, Any]) -> ModelCall | None:
    """The provider's raw request and response (``INSPECT_OTEL_CAPTURE_PROVIDER_CALL``), where
    Scout and Inspect's viewer keep them: ``ModelEvent.call``. Headers were never exported."""
    request = json_value(attrs.get(sc.INSPECT_MODEL_CALL_REQUEST))
    if not isinstance(request, dict):
        return None
    response = json_value(attrs.get(sc.INSPECT_MODEL_CALL_RESPONSE))
    return ModelCall(request=request, response=response if isinstance(response, dict) else None)


def _model_event(span: Span, parent: str | None, ctx: _Context) -> ModelEvent:
    attrs = span.attributes
    seed = f"{ctx.trace_id}/{span.span_id}"
    model = _model_name(attrs) or "unknown"
    inputs: list[ChatMessage] = system_messages(attrs.get(sc.GEN_AI_SYSTEM_INSTRUCTIONS), seed)
    inputs += messages_from_semconv(attrs.get(sc.GEN_AI_INPUT_MESSAGES), f"{seed}/in")
    choices = [
        ChatCompletionChoice(message=message,
                             stop_reason=STOP_REASONS.get(str(reason), "unknown"))  # type: ignore[arg-type]
        for message, reason in output_choices(attrs.get(sc.GEN_AI_OUTPUT_MESSAGES), f"{seed}/out",
                                              model)
    ]
    tools = _tools(attrs.get(sc.GEN_AI_TOOL_DEFINITIONS))
    duration = max(span.end_ns - span.start_ns, 0) / 1e9
    error = span.error if span.error else (_str(attrs.get(sc.ERROR_TYPE)) if attrs.get(sc.ERROR_TYPE) else None)
    output = ModelOutput(
        model=_str(attrs.get(sc.GEN_AI_RESPONSE_MODEL)) or model, choices=choices,
        usage=_usage(attrs), time=duration, error=error,
        response_id=_str(attrs.get(sc.GEN_AI_RESPONSE_ID)),
    )
    cache = attrs.get(sc.INSPECT_MODEL_CACHE)
    event = ModelEvent(
        call=_model_call(attrs),
        uuid=_str(attrs.get(sc.INSPECT_EVENT_UUID)) or stable_id(seed, "model"),
        span_id=parent, timestamp=_time(span.start_ns), completed=_time(span.end_ns),
        working_start=ctx.working_start(span.start_ns), working_time=duration,
        model=model, role=_str(attrs.get(sc.INSPECT_MODEL_ROLE)), input=inputs, tools=tools,
        tool_choice="auto" if tools else "none", config=_config(attrs), output=output,
        retries=_int(attrs.get(sc.INSPECT_MODEL_RETRIES)), error=error,
        cache=cache if cache in ("read", "write") else None,
    )
    if was_cut(attrs.get(sc.GEN_AI_INPUT_MESSAGES)):
        ctx.cut_inputs.add(id(event))
    return event


def _tool_event(span: Span, parent: str | None, ctx: _Context) -> ToolEvent:
    attrs = span.attributes
    arguments = json_value(attrs.get(sc.GEN_AI_TOOL_CALL_ARGUMENTS))
    error = None
    if attrs.get(sc.ERROR_TYPE) or span.error is not None:
        error = tool_error(attrs.get(sc.ERROR_TYPE),
                           attrs.get(sc.INSPECT_TOOL_ERROR_MESSAGE) or span.error or "")
    return ToolEvent(
        uuid=_str(attrs.get(sc.INSPECT_EVENT_UUID)) or stable_id(ctx.trace_id, span.span_id, "tool"),
        span_id=parent, timestamp=_time(span.start_ns), completed=_time(span.end_ns),
        working_start=ctx.working_start(span.start_ns),
        working_time=max(span.end_ns - span.start_ns, 0) / 1e9,
        id=_str(attrs.get(sc.GEN_AI_TOOL_CALL_ID)) or span.span_id,
        function=_str(attrs.get(sc.GEN_AI_TOOL_NAME)) or span.name.removeprefix("execute_tool "),
        arguments=arguments if isinstance(arguments, dict) else {},
        result=_tool_result(attrs.get(sc.GEN_AI_TOOL_CALL_RESULT)),
        error=error, agent=_str(attrs.get(sc.INSPECT_TOOL_AGENT)),
    )


def _sandbox_event(span: Span, parent: str | None, ctx: _Context) -> SandboxEvent | None:
    attrs = span.attributes
    action = attrs.get(sc.INSPECT_SANDBOX_ACTION)
    if action not in _SANDBOX_ACTIONS:
        return None
    target = _str(attrs.get(sc.INSPECT_SANDBOX_CMD))
    return SandboxEvent(
        uuid=stable_id(ctx.trace_id, span.span_id, "sandbox"), span_id=parent,
        timestamp=_time(span.start_ns), completed=_time(span.end_ns),
        working_start=ctx.working_start(span.start_ns), action=action,
        cmd=target if action == "exec" else None, file=None if action == "exec" else target,
        result=_int(attrs.get(sc.INSPECT_SANDBOX_RESULT)),
        output=_str(attrs.get(sc.INSPECT_SANDBOX_OUTPUT)),
    )


def _score_value(scorer: str, results: Sequence[Mapping[str, Any]]) -> Any:
    """One Inspect score value from its evaluation results (a dict score is one per key)."""
    def value(attrs: Mapping[str, Any]) -> Any:
        if sc.INSPECT_SCORE_VALUE_JSON in attrs:
            return json_value(attrs[sc.INSPECT_SCORE_VALUE_JSON])
        label = attrs.get(sc.GEN_AI_EVALUATION_SCORE_LABEL)
        return label if label is not None else attrs.get(sc.GEN_AI_EVALUATION_SCORE_VALUE)

    prefix = f"{scorer}/"
    keyed = [r for r in results if str(r.get(sc.GEN_AI_EVALUATION_NAME, "")).startswith(prefix)]
    if keyed and len(keyed) == len(results):
        return {str(r[sc.GEN_AI_EVALUATION_NAME])[len(prefix):]: value(r) for r in keyed}
    return value(results[0])


def _score_events(span: Span, events: Sequence[SpanEvent], span_id: str | None,
                  ctx: _Context) -> list[tuple[int, Event]]:
    """Evaluation results on one span -> ScoreEvents (results of one Inspect score share a time
    and a scorer)."""
    groups: dict[tuple[int, str, bool], list[Mapping[str, Any]]] = {}
    for event in events:
        attrs = event.attributes
        scorer = _str(attrs.get(sc.INSPECT_SCORER_NAME)) or text_value(
            attrs.get(sc.GEN_AI_EVALUATION_NAME)).split("/", 1)[0]
        intermediate = attrs.get(sc.INSPECT_SCORE_INTERMEDIATE) is True
        groups.setdefault((event.time_ns, scorer, intermediate), []).append(attrs)
    out: list[tuple[int, Event]] = []
    for (time_ns, scorer, intermediate), results in groups.items():
        first = results[0]
        score = Score(
            value=_score_value(scorer, results),
            answer=_str(first.get(sc.INSPECT_SCORE_ANSWER)),
            explanation=_str(first.get(sc.GEN_AI_EVALUATION_EXPLANATION)),
        )
        if not intermediate:
            ctx.scores.setdefault(scorer, score)
        out.append((time_ns, ScoreEvent(
            uuid=stable_id(ctx.trace_id, span.span_id, "score", scorer, time_ns), span_id=span_id,
            timestamp=_time(time_ns), working_start=ctx.working_start(time_ns), score=score,
            target=ctx.target, intermediate=intermediate, scorer=scorer,
        )))
    return out


def _error_event(e: SpanEvent, span_id: str | None, ctx: _Context) -> Event | None:
    message = text_value(e.attributes.get(sc.EXCEPTION_MESSAGE) or e.attributes.get(
        sc.EXCEPTION_TYPE) or "error")
    return ErrorEvent(error=EvalError(message=message, traceback=text_value(
        e.attributes.get("exception.stacktrace")), traceback_ansi=""), **_base(e, span_id, ctx))


def _logger_event(e: SpanEvent, span_id: str | None, ctx: _Context) -> Event | None:
    level = text_value(e.attributes.get("inspect.logger.level")) or "info"
    try:
        message = LoggingMessage(name=_str(e.attributes.get("inspect.logger.name")),
                                 level=level,  # type: ignore[arg-type]
                                 message=text_value(e.attributes.get(sc.INSPECT_MESSAGE)),
                                 created=e.time_ns / 1e6)
    except ValueError:
        return None
    return LoggerEvent(message=message, **_base(e, span_id, ctx))


def _info_event(e: SpanEvent, span_id: str | None, ctx: _Context) -> Event | None:
    data = json_value(e.attributes.get(sc.INSPECT_MESSAGE))
    return InfoEvent(source=_str(e.attributes.get("inspect.info.source")), data=data,
                     **_base(e, span_id, ctx))


def _limit_event(e: SpanEvent, span_id: str | None, ctx: _Context) -> Event | None:
    kind = e.attributes.get(sc.INSPECT_LIMIT_TYPE)
    if kind not in _LIMIT_TYPES:
        return None
    return SampleLimitEvent(type=kind, message=text_value(e.attributes.get(sc.INSPECT_MESSAGE)),
                            limit=_float(e.attributes.get(sc.INSPECT_LIMIT_VALUE)),
                            **_base(e, span_id, ctx))


def _approval_event(e: SpanEvent, span_id: str | None, ctx: _Context) -> Event | None:
    a = e.attributes
    decision = a.get(sc.INSPECT_APPROVAL_DECISION)
    if decision not in _APPROVAL_DECISIONS:
        return None
    call = ToolCall(id=text_value(a.get(sc.GEN_AI_TOOL_CALL_ID)),
                    function=text_value(a.get(sc.GEN_AI_TOOL_NAME)), arguments={})
    return ApprovalEvent(message="", call=call, approver=text_value(a.get(sc.INSPECT_APPROVAL_APPROVER)),
                         decision=decision, explanation=_str(a.get(sc.INSPECT_APPROVAL_EXPLANATION)),
                         **_base(e, span_id, ctx))


def _base(e: SpanEvent, span_id: str | None, ctx: _Context) -> dict[str, Any]:
    return {"uuid": stable_id(ctx.trace_id, span_id, e.name, e.time_ns),
            "span_id": span_id, "timestamp": _time(e.time_ns),
            "working_start": ctx.working_start(e.time_ns)}


# span event name -> Inspect event (what the hook's mapping/_events.py table emits, inverted).
POINT_EVENTS: Mapping[str, Callable[[SpanEvent, str | None, _Context], Event | None]] = {
    sc.EVENT_ERROR: _error_event,
    sc.EVENT_LOGGER: _logger_event,
    sc.EVENT_INFO: _info_event,
    sc.EVENT_SAMPLE_LIMIT: _limit_event,
    sc.EVENT_APPROVAL: _approval_event,
}


def _point_events(node: _Node, span_id: str | None, ctx: _Context) -> list[tuple[int, Event]]:
    out: list[tuple[int, Event]] = []
    results = [e for e in node.events() if e.name == sc.EVENT_EVALUATION_RESULT]
    if results:
        out += _score_events(node.span, results, span_id, ctx)
    for e in node.events():
        builder = POINT_EVENTS.get(e.name)
        event = builder(e, span_id, ctx) if builder else None
        if event is not None:
            out.append((e.time_ns, event))
    return out


def _walk(node: _Node, parent_inspect_id: str | None, in_scorer: bool, ctx: _Context,
          out: list[Event]) -> None:
    """Events of ``node``'s subtree in Inspect's order: a span's begin, its own event (model, tool,
    sandbox), then its children and point events by time, then its end."""
    attrs = node.attrs
    inspect_id = _str(attrs.get(sc.INSPECT_SPAN_ID))
    operation = attrs.get(sc.GEN_AI_OPERATION_NAME)
    here = inspect_id or parent_inspect_id  # the Inspect span events inside this one belong to
    in_scorer = in_scorer or attrs.get(sc.INSPECT_SPAN_TYPE) == "scorer"
    is_root = attrs.get(sc.INSPECT_SPAN_KIND) == sc.SPAN_KIND_SAMPLE
    if inspect_id and not is_root:
        out.append(SpanBeginEvent(
            uuid=stable_id(ctx.trace_id, node.span.span_id, "begin"), span_id=inspect_id,
            timestamp=_time(node.span.start_ns), working_start=ctx.working_start(node.span.start_ns),
            id=inspect_id, parent_id=parent_inspect_id, type=_str(attrs.get(sc.INSPECT_SPAN_TYPE)),
            name=_inspect_span_name(node.span),
        ))
    if not is_root:
        if operation in MODEL_OPERATIONS:
            event: Event | None = _model_event(node.span, parent_inspect_id, ctx)
            ctx.model_events.append((event, in_scorer))  # type: ignore[arg-type]
        elif operation in TOOL_OPERATIONS or (attrs.get(sc.GEN_AI_TOOL_NAME) and not inspect_id):
            event = _tool_event(node.span, parent_inspect_id, ctx)
        elif sc.INSPECT_SANDBOX_ACTION in attrs:
            event = _sandbox_event(node.span, parent_inspect_id, ctx)
        else:
            event = None
        if event is not None:
            out.append(event)
    # children (at their start) and this span's point events, merged by time
    items: list[tuple[int, int, int, Any]] = [
        (child.span.start_ns, 0, n, child) for n, child in enumerate(node.children)]
    items += [(t, 1, n, e) for n, (t, e) in enumerate(_point_events(node, here, ctx))]
    for _, rank, _, item in sorted(items, key=lambda i: i[:3]):
        if rank == 0:
            _walk(item, here, in_scorer, ctx, out)
        else:
            out.append(item)
    if inspect_id and not is_root:
        out.append(SpanEndEvent(
            uuid=stable_id(ctx.trace_id, node.span.span_id, "end"), span_id=inspect_id,
            timestamp=_time(node.span.end_ns), working_start=ctx.working_start(node.span.end_ns),
            id=inspect_id,
        ))


# --- Inspect samples -------------------------------------------------------------------------------

def _scout_score_fields(scores: Mapping[str, Score]) -> dict[str, Any]:
    """score / score_explanation / success exactly as Scout derives them from a sample's scores
    (its first scorer), with Scout's own functions."""
    from inspect_scout._transcript.eval_log import (
        sample_score,
        sample_score_explanation,
        sample_success,
    )

    sample = types.SimpleNamespace(scores=dict(scores))
    return {"score": sample_score(sample),  # type: ignore[arg-type]
            "score_explanation": sample_score_explanation(sample),  # type: ignore[arg-type]
            "success": sample_success(sample)}  # type: ignore[arg-type]


def _task_fields(task: TaskInfo | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(transcript fields, metadata) from the task span: agent, agent args, model options."""
    if task is None:
        return {}, {}
    attrs = task.attributes
    fields: dict[str, Any] = {}
    plan = json_value(attrs.get(sc.INSPECT_TASK_PLAN))
    solver = _str(attrs.get(sc.INSPECT_TASK_SOLVER))
    if solver:
        fields["agent"] = solver
    elif isinstance(plan, list) and plan and isinstance(plan[-1], Mapping):
        fields["agent"] = _str(plan[-1].get("solver"))
        params = plan[-1].get("params")
        fields["agent_args"] = dict(params) if isinstance(params, Mapping) else {}
    config = _config(attrs).model_dump(exclude_none=True)
    fields["model_options"] = config
    metadata: dict[str, Any] = {
        "log": _str(attrs.get(sc.INSPECT_TASK_LOG_LOCATION)),
        "eval_status": _str(attrs.get(sc.INSPECT_TASK_STATUS)),
        "eval_tags": ",".join(text_value(t) for t in attrs.get(sc.INSPECT_TASK_TAGS) or []),
        "task_args": json_value(attrs.get(sc.INSPECT_TASK_ARGS)),
        "generate_config": config,
        "task_version": attrs.get(sc.INSPECT_TASK_VERSION),
    }
    return fields, {k: v for k, v in metadata.items() if v is not None}


def _content_captured(trace: Trace, root: Span | None) -> bool:
    if root is not None and any(k in root.attributes for k in (
            sc.INSPECT_SAMPLE_INPUT, sc.INSPECT_SAMPLE_MESSAGES, sc.GEN_AI_INPUT_MESSAGES)):
        return True
    return any(sc.GEN_AI_INPUT_MESSAGES in s.attributes or sc.GEN_AI_OUTPUT_MESSAGES in s.attributes
               for s in trace.spans)


def _conversation(ctx: _Context) -> list[ChatMessage]:
    """The conversation of the last model call outside scorers: its input and its answer (for
    traces without the whole conversation on the root)."""
    calls = [event for event, in_scorer in ctx.model_events if not in_scorer] or [
        event for event, _ in ctx.model_events]
    if not calls:
        return []
    last = calls[-1]
    answer = [last.output.choices[0].message] if last.output.choices else []
    return [*last.input, *answer]


def _sample_transcript(trace: Trace, root: Span, task: TaskInfo | None, source_type: str,
                       source_uri: str | None) -> Transcript:
    attrs = root.attributes
    uuid = _str(attrs.get(sc.INSPECT_SAMPLE_UUID)) or trace.trace_id
    content = _content_captured(trace, root)
    ctx = _Context(trace_id=trace.trace_id, start_ns=root.start_ns,
                   target=_str(attrs.get(sc.INSPECT_SAMPLE_TARGET)))
    events: list[Event] = []
    _walk(_tree(trace, root), None, False, ctx, events)

    seed = f"{trace.trace_id}/sample"
    if ctx.cut_inputs or was_cut(attrs.get(sc.INSPECT_SAMPLE_MESSAGES)):
        # a long conversation, fitted to the budget on each span: whole again from all of them
        calls = [event for event, in_scorer in ctx.model_events if not in_scorer]
        messages = rebuild(attrs.get(sc.INSPECT_SAMPLE_MESSAGES), seed, calls, ctx.cut_inputs)
    elif sc.INSPECT_SAMPLE_MESSAGES in attrs:
        messages = messages_from_semconv(attrs[sc.INSPECT_SAMPLE_MESSAGES], seed)
    else:
        messages = _conversation(ctx)
    task_fields, task_metadata = _task_fields(task)
    task_name = _str(attrs.get(sc.INSPECT_TASK_NAME)) or ""
    sample_id = _str(attrs.get(sc.INSPECT_SAMPLE_ID))
    scores = ctx.scores
    metadata: dict[str, Any] = {
        "sample_id": uuid,
        "eval_id": _str(attrs.get(sc.INSPECT_EVAL_ID)),
        "run_id": _str(attrs.get(sc.INSPECT_RUN_ID)),
        "eval_set_id": _str(attrs.get(sc.INSPECT_EVAL_SET_ID)),
        **task_metadata,
        "id": sample_id,
        "epoch": _int(attrs.get(sc.INSPECT_SAMPLE_EPOCH)),
        "input": _str(attrs.get(sc.INSPECT_SAMPLE_INPUT)),
        "target": ctx.target,
        "sample_metadata": {k[len(sc.INSPECT_SAMPLE_METADATA_PREFIX):]: v for k, v in attrs.items()
                            if k.startswith(sc.INSPECT_SAMPLE_METADATA_PREFIX)} or None,
        **{f"score_{name}": score.value for name, score in scores.items()},
        "scores": {name: score.model_dump(exclude_none=True) for name, score in scores.items()},
        "working_time": _float(attrs.get(sc.INSPECT_SAMPLE_WORKING_TIME)),
        "status": _str(attrs.get(sc.INSPECT_SAMPLE_STATUS)),
        "retries": _int(attrs.get(sc.INSPECT_SAMPLE_RETRIES)),
        "model_calls": _int(attrs.get(sc.INSPECT_SAMPLE_MODEL_CALLS)),
        "tool_calls": _int(attrs.get(sc.INSPECT_SAMPLE_TOOL_CALLS)),
        "tool_errors": _int(attrs.get(sc.INSPECT_SAMPLE_TOOL_ERRORS)),
        "total_cost": _float(attrs.get(sc.INSPECT_SAMPLE_COST)),
        "trace_id": trace.trace_id,
        "content_captured": content,
    }
    message_count = _int(attrs.get(sc.INSPECT_SAMPLE_MESSAGE_COUNT))
    return Transcript(
        transcript_id=uuid,
        source_type=source_type,
        source_id=_str(attrs.get(sc.INSPECT_EVAL_ID)),
        source_uri=source_uri,
        date=_time(root.end_ns).isoformat(),
        task_set=task_name.split("/", 1)[-1],  # without its package, as Scout does
        task_id=sample_id,
        task_repeat=_int(attrs.get(sc.INSPECT_SAMPLE_EPOCH)),
        model=_str(attrs.get(sc.INSPECT_MODEL)),
        **task_fields,
        **_scout_score_fields(scores),
        message_count=message_count if message_count is not None else len(messages),
        total_time=_float(attrs.get(sc.INSPECT_SAMPLE_TOTAL_TIME)),
        total_tokens=_int(attrs.get(sc.INSPECT_SAMPLE_TOTAL_TOKENS)),
        # Scout's own eval-log reading gives "" (not None) for no error and no limit
        error=_str(attrs.get(sc.INSPECT_ERROR_MESSAGE)) or (root.error or ""),
        limit=_str(attrs.get(sc.INSPECT_SAMPLE_LIMIT_TYPE)) or "",
        metadata={k: v for k, v in metadata.items() if v is not None},
        messages=messages,
        events=events,
    )


# --- other GenAI producers ---------------------------------------------------------------------------

def _generic_walk(node: _Node, parent: str | None, ctx: _Context, out: list[Event]) -> None:
    attrs = node.attrs
    operation = attrs.get(sc.GEN_AI_OPERATION_NAME)
    opens = operation in AGENT_OPERATIONS or operation in WORKFLOW_OPERATIONS
    here = node.span.span_id if opens else parent
    if opens:
        name = _str(attrs.get(sc.GEN_AI_AGENT_NAME)) or _str(attrs.get(sc.GEN_AI_WORKFLOW_NAME)) \
            or node.span.name
        out.append(SpanBeginEvent(
            uuid=stable_id(ctx.trace_id, node.span.span_id, "begin"), span_id=here,
            timestamp=_time(node.span.start_ns), working_start=ctx.working_start(node.span.start_ns),
            id=node.span.span_id, parent_id=parent,
            type="agent" if operation in AGENT_OPERATIONS else "workflow", name=name,
        ))
    elif operation in MODEL_OPERATIONS:
        event = _model_event(node.span, parent, ctx)
        ctx.model_events.append((event, False))
        out.append(event)
    elif operation in TOOL_OPERATIONS or attrs.get(sc.GEN_AI_TOOL_NAME):
        out.append(_tool_event(node.span, parent, ctx))
    items: list[tuple[int, int, int, Any]] = [
        (child.span.start_ns, 0, n, child) for n, child in enumerate(node.children)]
    items += [(t, 1, n, e) for n, (t, e) in enumerate(_point_events(node, here, ctx))]
    for _, rank, _, item in sorted(items, key=lambda i: i[:3]):
        if rank == 0:
            _generic_walk(item, here, ctx, out)
        else:
            out.append(item)
    if opens:
        out.append(SpanEndEvent(
            uuid=stable_id(ctx.trace_id, node.span.span_id, "end"), span_id=here,
            timestamp=_time(node.span.end_ns), working_start=ctx.working_start(node.span.end_ns),
            id=node.span.span_id,
        ))


def _generic_transcript(trace: Trace, source_type: str, source_id: str | None,
                        source_uri: str | None) -> Transcript:
    spans = sorted(trace.spans, key=lambda s: (s.start_ns, s.span_id))
    ids = {s.span_id for s in spans}
    # a trace whose root never arrived has several top spans: they hang under the earliest
    root = next(s for s in spans if not s.parent_id or s.parent_id not in ids)
    ctx = _Context(trace_id=trace.trace_id, start_ns=root.start_ns)
    top = _tree(trace, root)
    events: list[Event] = []
    _generic_walk(top, None, ctx, events)
    agent = next((s for s in spans if s.attributes.get(sc.GEN_AI_OPERATION_NAME) in AGENT_OPERATIONS),
                 None)
    models = [e for e, _ in ctx.model_events]
    usage = [e.output.usage for e in models if e.output.usage is not None]
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    messages = _conversation(ctx)
    resource = root.resource or {}
    scores = ctx.scores
    return Transcript(
        transcript_id=trace.trace_id,
        source_type=source_type,
        source_id=source_id or _str(resource.get("service.name")),
        source_uri=source_uri,
        date=_time(end).isoformat(),
        task_set=_str(resource.get("service.name")),
        agent=_str(agent.attributes.get(sc.GEN_AI_AGENT_NAME)) if agent else None,
        model=(models[0].output.model or models[0].model) if models else None,
        **_scout_score_fields(scores),
        message_count=len(messages),
        total_time=(end - start) / 1e9,
        total_tokens=sum(u.total_tokens for u in usage) if usage else None,
        error=root.error or None,
        metadata={
            "trace_id": trace.trace_id,
            "root_span": root.name,
            "spans": len(spans),
            "content_captured": _content_captured(trace, None),
            **{f"score_{name}": score.value for name, score in scores.items()},
        },
        messages=messages,
        events=events,
    )


# --- entry point -------------------------------------------------------------------------------------

def to_transcript(trace: Trace, *, source_type: str, tasks: Mapping[str, TaskInfo] | None = None,
                  source_id: str | None = None) -> Transcript | None:
    """The transcript of one trace; None for traces that are context (run/task) or hold no GenAI
    spans."""
    kind = trace_kind(trace)
    if kind == "sample":
        root = _root(trace)
        assert root is not None
        eval_id = _str(root.attributes.get(sc.INSPECT_EVAL_ID)) or ""
        return _sample_transcript(trace, root, (tasks or {}).get(eval_id), source_type,
                                  trace.source_uri)
    if kind == "genai":
        return _generic_transcript(trace, source_type, source_id, trace.source_uri)
    return None
