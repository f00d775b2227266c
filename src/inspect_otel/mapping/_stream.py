"""One sample's transcript events -> its spans and evaluation results, incrementally.

:class:`SampleMapper` is the one mapping driver of a sample trace. The live hook feeds it each event
as Inspect delivers it (``on_sample_event``) and the log replay feeds it the events of a finished
sample in log order; both then call :meth:`SampleMapper.finish` with the finished sample for the
root and what is known only at the end. A span leaves the mapper the moment it is complete, with
the ids, names, parents, attributes and timestamps it has in the replay, so a live span and its
replayed copy are the same span.

Pure: no I/O, no clock. Inspect's live-stream quirks are handled here, keyed by event uuid:
- an event is mapped once, when it is final (a model event arrives again once completed);
- an event whose enclosing Inspect span is not known yet (the ``init`` span and what it holds
  never reach ``on_sample_event``) waits for the finished transcript at sample end;
- a tool span completes when both its span end and its ToolEvent are in (live, the ToolEvent
  comes after the span end; in a log, right after the span begins);
- an exception is recorded where it happened: a tool call that raised (``ToolEvent.failed``) or
  a model call that raised starts a failure; the spans that end while it propagates (the tool's,
  then its solver's and so on) wait for the sample's ``ErrorEvent`` and end with status ERROR,
  ``error.type`` and an ``exception`` event (message and traceback). Any other event first means
  the exception was caught: the waiting spans leave as they are (the tool's with its error);
- a handoff is one span: Inspect wraps the handoff tool's [tool] span (the agent runs inside it)
  in a [handoff] span and records the ToolEvent under the handoff's parent. The [tool] span takes
  the [handoff] span's place (its parent, its start, its end, its children and events) and
  becomes the handoff's ``execute_tool`` span; the [handoff] span itself never leaves.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from typing import Any

from .. import ids
from .. import semconv as sc
from ..content import ContentPolicy
from ..conversation import Conversation
from ._common import model_attributes, to_ns
from ._events import SPAN_EVENTS, exception_attributes
from ._model import model_span
from ._score import evaluation_attributes
from ._tool import sandbox_attributes, tool_attributes
from ._types import (
    EvaluationResult,
    Kind,
    LinkData,
    ModelCallMeasure,
    SpanData,
    SpanEventData,
    TaskContext,
)

# Inspect span types that are containers named after themselves.
_CONTAINER_TYPES = {"init", "solvers", "scorers"}
_FINAL_WHEN_COMPLETED = {"model", "tool", "sandbox"}


@dataclass(frozen=True)
class Completed:
    """What left the mapper after one event: finished spans and evaluation results."""

    spans: tuple[SpanData, ...] = ()
    results: tuple[EvaluationResult, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.spans or self.results)


NOTHING = Completed()


@dataclass
class _Span:
    """A span under construction (mutable only inside the mapper)."""

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
    tool_matched: bool = False
    emitted: bool = False
    # A [tool] span that took a [handoff] span's place: it waits for the handoff's end too.
    handoff_id: str | None = None
    handoff_open: bool = False
    raised: bool = False  # ended while an exception propagated through it

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


@dataclass
class _Attempt:
    """State of one attempt of the sample; a retry starts a fresh one."""

    number: int
    root: _Span
    spans: dict[str, _Span] = field(default_factory=dict)  # Inspect span id -> span
    by_otel_id: dict[int, _Span] = field(default_factory=dict)
    # (Inspect parent span id, function) -> tool spans / ToolEvents waiting for each other
    open_tools: dict[tuple[str | None, str], deque[_Span]] = field(
        default_factory=lambda: defaultdict(deque))
    waiting_tool_events: dict[tuple[str | None, str], deque[tuple[int, Any]]] = field(
        default_factory=lambda: defaultdict(deque))
    model_calls: list[ModelCallMeasure] = field(default_factory=list)
    model_errors: int = 0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    root_scores: dict[str, float] = field(default_factory=dict)
    final_results: set[tuple[str, int]] = field(default_factory=set)
    # An exception propagating (a tool or model call raised) and the spans it ended so far.
    failing: bool = False
    raising: list[_Span] = field(default_factory=list)


def inspect_span_name(span_type: str | None, name: str) -> str:
    if not span_type or span_type in _CONTAINER_TYPES or span_type == name:
        return name
    if span_type == "agent":
        return f"{sc.OP_INVOKE_AGENT} {name}"
    return f"{span_type} {name}"


def event_key(event: Any, index: int) -> str:
    return f"event/{event.uuid}" if event.uuid else f"event#{index}"


class SampleMapper:
    """Incremental mapping of one sample x epoch (see the module docstring).

    ``live``: events come from Inspect's live stream (only final events are mapped, once each;
    events inside spans not seen yet wait for the transcript at sample end). Otherwise they come
    from a finished log, in order, and every event is mapped as it is.
    ``end_ns``: the sample's end when already known (replay): the fallback time of events that
    carry none (very old logs), exactly as before.
    """

    def __init__(
        self,
        ctx: TaskContext,
        policy: ContentPolicy,
        *,
        identity: dict[str, Any],
        uuid: str,
        start_ns: int,
        attempt: int = 1,
        live: bool,
        end_ns: int | None = None,
    ) -> None:
        self.ctx = ctx
        self.policy = policy
        self.identity = identity
        self.uuid = uuid
        self.live = live
        # Tool spans and ToolEvents pair up differently in a log than in the live stream; the
        # finished transcript mapped at a live sample's end is in log order too.
        self.log_order = not live
        self.trace_id = ids.sample_trace_id(uuid)
        self.root_id = ids.span_id(self.trace_id, "sample")
        self.start_ns = start_ns
        self._fallback_end = end_ns if end_ns is not None else start_ns
        self._seen: set[str] = set()  # uuids of events already mapped (live redelivery)
        # The sample's attachments, for ModelEvent.call condensed in a transcript (a finished
        # sample's); live events carry their call inline.
        self.attachments: dict[str, str] | None = None
        # Content capture: the sample's messages, each converted and redacted once.
        self.conversation = Conversation(policy)
        self.attempt = self._new_attempt(attempt)

    # --- identity -----------------------------------------------------------------------------
    def root_at_start(self) -> SpanData:
        """The root as known at the start (trace id, name, identity): what sampling decides on,
        live and replayed alike."""
        attributes = {sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT,
                      sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_SAMPLE,
                      **model_attributes(self.ctx.model), **self.identity}
        if self.ctx.tags:  # a backend can label the run from its first sample (the receiver does)
            attributes[sc.INSPECT_TASK_TAGS] = self.ctx.tags
        return SpanData(self.trace_id, self.root_id, None, self.root_name, Kind.INTERNAL,
                        self.start_ns, self.start_ns, attributes)

    @property
    def root_name(self) -> str:
        return f"{sc.OP_INVOKE_AGENT} {self.ctx.task_name}"

    def task_link(self) -> LinkData:
        return LinkData(ids.run_trace_id(self.ctx.run_id),
                        ids.task_span_id(self.ctx.run_id, self.ctx.eval_id))

    def _new_attempt(self, number: int) -> _Attempt:
        root = _Span(span_id=self.root_id, parent_span_id=None, name=self.root_name,
                     start_ns=self.start_ns)
        attempt = _Attempt(number=number, root=root)
        attempt.by_otel_id[self.root_id] = root
        return attempt

    # --- events -------------------------------------------------------------------------------
    def feed(self, event: Any, index: int = 0) -> Completed:
        """Map one transcript event; returns the spans and results it completed."""
        uuid = getattr(event, "uuid", None)
        if self.live:
            if uuid is None or uuid in self._seen:
                return NOTHING
            if not self.log_order and not (self._final(event) and self._parent_known(event)):
                return NOTHING  # mapped when final, or from the finished transcript at the end
            self._seen.add(uuid)
        settled = NOTHING
        if self.attempt.failing and event.event in _CONTINUING:
            settled = self._settle_failure(None)  # the exception was caught: the sample goes on
        handler = _HANDLERS.get(event.event)
        if handler is not None:
            done = handler(self, event, index)
            return Completed(settled.spans + done.spans, done.results) if settled else done
        if event.event in SPAN_EVENTS:
            name, mapper = SPAN_EVENTS[event.event]
            self._enclosing(event).events.append(
                SpanEventData(name, to_ns(event.timestamp) or self.start_ns, mapper(event, self.policy))
            )
        return settled

    def _final(self, event: Any) -> bool:
        if event.pending:
            return False
        if event.event in _FINAL_WHEN_COMPLETED:
            return event.completed is not None or getattr(event, "error", None) is not None
        return True

    def _parent_known(self, event: Any) -> bool:
        span_id = event.parent_id if event.event == "span_begin" else event.span_id
        if event.event == "span_end":
            return event.id in self.attempt.spans
        return span_id is None or span_id in self.attempt.spans

    def _enclosing(self, event: Any) -> _Span:
        a = self.attempt
        return a.spans.get(event.span_id, a.root) if event.span_id else a.root

    def _span_begin(self, event: Any, index: int) -> Completed:
        a = self.attempt
        parent = a.spans.get(event.parent_id) if event.parent_id else None
        span = _Span(
            span_id=ids.span_id(self.trace_id, f"span/{event.id}"),
            parent_span_id=parent.span_id if parent else self.root_id,
            name=inspect_span_name(event.type, event.name),
            start_ns=to_ns(event.timestamp) or self.start_ns,
            inspect_type=event.type,
            inspect_name=event.name,
            inspect_parent=event.parent_id,
            attributes={sc.INSPECT_SPAN_ID: event.id, sc.INSPECT_SPAN_TYPE: event.type or ""},
        )
        if parent is None:
            # Top-level spans (init, solvers, scorers) name their attempt: a retried sample's
            # failed attempts stay in its trace, side by side with the final one.
            span.attributes[sc.INSPECT_SAMPLE_ATTEMPT] = a.number
        if event.type == "agent":
            span.attributes[sc.GEN_AI_OPERATION_NAME] = sc.OP_INVOKE_AGENT
            span.attributes[sc.GEN_AI_AGENT_NAME] = event.name
        if event.type == "scorer":
            span.attributes[sc.INSPECT_SCORER_NAME] = event.name
            span.attributes[sc.INSPECT_SCORER_MODEL_GRADED] = False
        a.spans[event.id] = span
        a.by_otel_id[span.span_id] = span
        if event.type == "tool" and parent is not None and parent.inspect_type == "handoff" \
                and parent.handoff_id is None:
            self._fold_handoff(span, parent, event.parent_id)
        if event.type == "tool":
            key = (span.inspect_parent, event.name)
            waiting = a.waiting_tool_events.get(key)
            if waiting:
                self._apply_tool(span, *waiting.popleft())
            else:
                a.open_tools[key].append(span)
        return NOTHING

    def _fold_handoff(self, tool: _Span, handoff: _Span, handoff_id: str) -> None:
        """The [tool] span takes the place of the [handoff] span around it (module docstring)."""
        a = self.attempt
        tool.parent_span_id = handoff.parent_span_id
        tool.inspect_parent = handoff.inspect_parent
        tool.start_ns = min(tool.start_ns, handoff.start_ns)
        tool.attributes.update({k: v for k, v in handoff.attributes.items()
                                if k == sc.INSPECT_SAMPLE_ATTEMPT})
        tool.events[:0] = handoff.events
        tool.handoff_id, tool.handoff_open = handoff_id, True
        for other in a.spans.values():
            if other.parent_span_id == handoff.span_id and not other.emitted:
                other.parent_span_id = tool.span_id
        a.spans[handoff_id] = tool  # its end, its children and its events now find the tool span
        del a.by_otel_id[handoff.span_id]

    def _span_end(self, event: Any, index: int) -> Completed:
        span = self.attempt.spans.get(event.id)
        if span is None or span.emitted:
            return NOTHING
        end = to_ns(event.timestamp)
        if span.handoff_id is not None:
            if event.id == span.handoff_id:
                span.handoff_open = False
            if end is not None and span.end_ns is not None:
                end = max(end, span.end_ns)
        span.end_ns = end
        if span.inspect_type == "tool" and not span.tool_matched:
            return NOTHING  # completes with its ToolEvent
        if span.handoff_open:
            return NOTHING  # completes with the handoff's end
        if self.live and span.parent_span_id == self.root_id and \
                self.attempt.number <= self.ctx.retries:
            # An attempt that may be retried keeps its top-level spans (solvers, scorers) until
            # it ends: a failed one's carry its error. Their children leave as each completes;
            # without retries a failed attempt is the sample's last, its root carries the error.
            return NOTHING
        return self._emit_or_hold(span)

    def _emit_or_hold(self, span: _Span) -> Completed:
        """A complete span leaves, unless an exception is propagating through it: then it waits
        for the exception (module docstring)."""
        if not self.attempt.failing:
            return self._emit(span)
        span.raised = True
        self.attempt.raising.append(span)
        return NOTHING

    def _error(self, event: Any, index: int) -> Completed:
        """The sample's error (an ErrorEvent): an ``exception`` event on its enclosing span, as
        any span event, and the spans it ended on its way out end with it."""
        attrs = exception_attributes(event.error, self.policy)
        self._enclosing(event).events.append(
            SpanEventData(sc.EVENT_ERROR, to_ns(event.timestamp) or self.start_ns, attrs))
        return self._settle_failure(attrs, to_ns(event.timestamp) or self.start_ns)

    def _settle_failure(self, exception: dict[str, Any] | None, time_ns: int = 0) -> Completed:
        a = self.attempt
        spans = []
        for span in a.raising:
            if exception is not None:
                span.error = exception[sc.EXCEPTION_MESSAGE]
                span.attributes[sc.ERROR_TYPE] = exception[sc.EXCEPTION_TYPE]
                span.events.append(SpanEventData(sc.EVENT_ERROR, time_ns, exception))
            if not span.emitted:
                spans.append(self._release(span))
        a.failing, a.raising = False, []
        return Completed(spans=tuple(spans))

    def _emit(self, span: _Span) -> Completed:
        return Completed(spans=(self._release(span),))

    def _release(self, span: _Span) -> SpanData:
        """``span`` frozen for export; what stays in the mapper keeps only the tree (ids, types,
        parents): a running sample holds no content of the spans it has already sent."""
        span.emitted = True
        frozen = span.freeze(self.trace_id, self._fallback_end)
        span.attributes, span.events = {}, []
        return frozen

    def _model(self, event: Any, index: int) -> Completed:
        a = self.attempt
        parent = self._enclosing(event)
        span, measure = model_span(
            event, self.trace_id, ids.span_id(self.trace_id, event_key(event, index)),
            parent.span_id, self.policy, self.ctx.endpoints, self.attachments, self.conversation,
        )
        a.model_calls.append(measure)
        if sc.ERROR_TYPE in span.attributes:
            a.model_errors += 1
        if event.error:  # the call raised (not a refusal or a content filter): it propagates
            a.failing = True
        # A scorer that called a model is model-graded (an LLM judge).
        ancestor: _Span | None = parent
        while ancestor is not None and ancestor.inspect_type != "scorer":
            ancestor = a.by_otel_id.get(ancestor.parent_span_id or 0)
        if ancestor is not None:
            ancestor.attributes[sc.INSPECT_SCORER_MODEL_GRADED] = True
        return Completed(spans=(span,))

    def _tool(self, event: Any, index: int) -> Completed:
        a = self.attempt
        key = (event.span_id, event.function)
        waiting = a.open_tools.get(key)
        target = None
        if waiting:
            # From a log the ToolEvent follows its span's begin: first come, first matched. Live
            # it follows its span's end: an ended span is the one.
            target = waiting[0]
            if not self.log_order:
                target = next((s for s in waiting if s.end_ns is not None), target)
            waiting.remove(target)
        if target is None:
            if not self.log_order:  # its span has ended unclaimed or there is none: a span of its own
                return Completed(spans=(self._orphan_tool(index, event),))
            # From a log its span may still begin (or never will: a span of its own at the end).
            a.waiting_tool_events[key].append((index, event))
            return NOTHING
        self._apply_tool(target, index, event)
        if target.end_ns is None or target.handoff_open:
            return NOTHING
        return self._emit_or_hold(target)

    def _apply_tool(self, target: _Span, index: int, event: Any) -> None:
        attrs, error = tool_attributes(event, self.policy)
        target.name = f"{sc.OP_EXECUTE_TOOL} {event.function}"
        target.attributes.update(attrs)
        target.error = error
        target.tool_matched = True
        if event.failed and event.error is None:  # the tool raised: an exception propagates
            target.error = f"tool {event.function} raised"
            target.attributes[sc.ERROR_TYPE] = "tool_raised"
            self.attempt.failing = True
        self.attempt.tool_calls.append(
            {k: attrs[k] for k in (sc.GEN_AI_TOOL_NAME, sc.ERROR_TYPE) if k in attrs})

    def _orphan_tool(self, index: int, event: Any) -> SpanData:
        """A ToolEvent no tool span claimed: a span of its own (its exception, if it raised, is
        the sample's: it is not held, nothing else of it will end)."""
        span = _Span(
            span_id=ids.span_id(self.trace_id, event_key(event, index)),
            parent_span_id=self._enclosing(event).span_id,
            name="",
            start_ns=to_ns(event.timestamp) or self.start_ns,
            end_ns=to_ns(event.completed),
        )
        self._apply_tool(span, index, event)
        return self._release(span)

    def _sandbox(self, event: Any, index: int) -> Completed:
        start = to_ns(event.timestamp) or self.start_ns
        span = _Span(
            span_id=ids.span_id(self.trace_id, event_key(event, index)),
            parent_span_id=self._enclosing(event).span_id,
            name=f"sandbox {event.action}",
            start_ns=start,
            end_ns=to_ns(event.completed) or start,
            attributes=sandbox_attributes(event, self.policy),
        )
        return self._emit(span)

    def _score(self, event: Any, index: int) -> Completed:
        a = self.attempt
        span = self._enclosing(event)
        scorer = event.scorer or (span.inspect_name if span.inspect_type == "scorer" else "score")
        model_graded = bool(span.attributes.get(sc.INSPECT_SCORER_MODEL_GRADED, False))
        time_ns = to_ns(event.timestamp) or self._fallback_end
        shared = dict(scorer=scorer, score=event.score, intermediate=event.intermediate,
                      model_graded=model_graded, identity=self.identity,
                      scorer_span_hex=ids.span_id_hex(span.span_id), policy=self.policy)
        for attrs in evaluation_attributes(**shared, content=self.policy.on_spans):
            span.events.append(SpanEventData(sc.EVENT_EVALUATION_RESULT, time_ns, attrs))
            value = attrs.get(sc.GEN_AI_EVALUATION_SCORE_VALUE)
            if not event.intermediate:
                a.final_results.add((attrs[sc.GEN_AI_EVALUATION_NAME], span.span_id))
                if isinstance(value, float):
                    a.root_scores[attrs[sc.GEN_AI_EVALUATION_NAME]] = value
        results = tuple(
            EvaluationResult(self.trace_id, span.span_id, time_ns, attrs)
            for attrs in evaluation_attributes(**shared, content=self.policy.on_events)
        )
        return Completed(results=results)

    # --- ends ---------------------------------------------------------------------------------
    def _close(self, end_ns: int, exception: dict[str, Any] | None = None) -> list[SpanData]:
        """Every span of the current attempt that has not left yet, ended at ``end_ns``; with the
        attempt's ``exception`` (exception_attributes), the spans it ended or interrupted and the
        top-level ones end with it."""
        a = self.attempt
        out: list[SpanData] = []
        for waiting in a.waiting_tool_events.values():
            for index, event in waiting:
                out.append(self._orphan_tool(index, event))
        a.waiting_tool_events.clear()
        for span in a.spans.values():
            if span.emitted:
                continue
            unfinished = span.end_ns is None or (span.inspect_type == "tool" and not span.tool_matched)
            if exception is not None and (unfinished or span.raised or
                                          span.parent_span_id == self.root_id):
                # the failed attempt, and what it was doing when it failed
                span.error = exception[sc.EXCEPTION_MESSAGE]
                span.attributes[sc.ERROR_TYPE] = exception[sc.EXCEPTION_TYPE]
                if unfinished or span.raised:
                    span.events.append(SpanEventData(sc.EVENT_ERROR, end_ns, exception))
            span.end_ns = span.end_ns if span.end_ns is not None else end_ns
            out.append(self._release(span))
        a.failing, a.raising = False, []
        return out

    def end_attempt(self, end_ns: int, next_attempt: int, error: Any | None) -> Completed:
        """A failed attempt that will be retried (live only): its spans have left or leave now,
        still-open ones ended with the attempt's error (Inspect's EvalError: message and
        traceback); the retry maps into a fresh attempt."""
        spans = self._close(end_ns, exception_attributes(error, self.policy) if error else None)
        self.attempt = self._new_attempt(next_attempt)
        return Completed(spans=tuple(spans))

    def finish_spans(self, end_ns: int) -> list[SpanData]:
        return self._close(end_ns)


_HANDLERS = {
    "span_begin": SampleMapper._span_begin,
    "span_end": SampleMapper._span_end,
    "model": SampleMapper._model,
    "tool": SampleMapper._tool,
    "sandbox": SampleMapper._sandbox,
    "score": SampleMapper._score,
    "error": SampleMapper._error,
}
# Events of new work: one of them while an exception propagates means it was caught. (Spans
# end, and Inspect logs and records the error, while it propagates.)
_CONTINUING = frozenset(("span_begin", "model", "tool", "sandbox", "score", "state", "store",
                         "subtask", "approval", "input"))


def with_link(root: SpanData, link: LinkData) -> SpanData:
    return replace(root, links=(link,))
