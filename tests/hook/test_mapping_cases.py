"""Transcript cases the calculator eval does not produce, built from Inspect's real event classes
and fed to the pure mapping (no server): intermediate and dict scores, approvals, limits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from inspect_ai.event import (
    ApprovalEvent,
    ScoreEvent,
    SampleLimitEvent,
    SpanBeginEvent,
    SpanEndEvent,
    ToolEvent,
)
from inspect_ai.log import EvalSample
from inspect_ai.log._log import EvalSampleLimit
from inspect_ai.scorer import Score
from inspect_ai.tool import ToolCall

from inspect_otel.config import ContentCapture
from inspect_otel.content import ContentPolicy
from inspect_otel.mapping import TaskContext, map_sample

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CTX = TaskContext(run_id="run1", eval_id="ev1", eval_set_id=None, task_name="t", model="openai/gpt-4o",
                  sample_ids=("x", "y"), epochs=2)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sample(events, **kwargs) -> EvalSample:
    return EvalSample(id="y", epoch=2, uuid="u-1", input="hi", target="t", events=events,
                      started_at=at(0).isoformat(), completed_at=at(10).isoformat(), **kwargs)


def test_intermediate_and_dict_scores():
    events = [
        SpanBeginEvent(id="s1", name="solvers", type="solvers", timestamp=at(1)),
        ScoreEvent(score=Score(value=0.5), intermediate=True, scorer="progress", span_id="s1",
                   timestamp=at(2)),
        SpanEndEvent(id="s1", timestamp=at(3)),
        SpanBeginEvent(id="s2", name="scorers", type="scorers", timestamp=at(4)),
        SpanBeginEvent(id="s3", name="rubric", type="scorer", parent_id="s2", timestamp=at(4)),
        ScoreEvent(score=Score(value={"accuracy": "C", "style": 0.25}, explanation="why"),
                   scorer="rubric", span_id="s3", timestamp=at(5)),
        SpanEndEvent(id="s3", timestamp=at(6)),
        SpanEndEvent(id="s2", timestamp=at(6)),
    ]
    telemetry = map_sample(sample(events), CTX, ContentPolicy())
    results = {r.attributes["gen_ai.evaluation.name"]: r.attributes for r in telemetry.results}
    assert set(results) == {"progress", "rubric/accuracy", "rubric/style"}
    assert results["progress"]["inspect.score.intermediate"] is True
    assert results["rubric/accuracy"]["gen_ai.evaluation.score.value"] == 1.0
    assert results["rubric/accuracy"]["gen_ai.evaluation.score.label"] == "C"
    assert results["rubric/style"]["gen_ai.evaluation.score.value"] == 0.25
    assert "gen_ai.evaluation.explanation" not in results["rubric/style"]  # content off
    root = telemetry.root
    # only final scores summarise onto the root
    assert root.attributes["inspect.sample.score.rubric/style"] == 0.25
    assert "inspect.sample.score.progress" not in root.attributes
    # ordinal: epoch 2 of sample "y" (index 1) in a 2-sample dataset
    assert root.attributes["inspect.sample.index"] == 1
    assert root.attributes["inspect.sample.ordinal"] == 3


def test_content_modes_split_spans_and_events():
    events = [ScoreEvent(score=Score(value="C", explanation="because"), scorer="m", timestamp=at(1))]
    span_only = map_sample(sample(events), CTX, ContentPolicy(capture=ContentCapture.SPAN_ONLY))
    event_attrs = [e.attributes for s in span_only.spans for e in s.events]
    assert event_attrs[0]["gen_ai.evaluation.explanation"] == "because"
    assert "gen_ai.evaluation.explanation" not in span_only.results[0].attributes
    event_only = map_sample(sample(events), CTX, ContentPolicy(capture=ContentCapture.EVENT_ONLY))
    assert event_only.results[0].attributes["gen_ai.evaluation.explanation"] == "because"
    assert "inspect.sample.input" not in event_only.root.attributes


def test_approvals_limits_and_orphan_tool_events():
    call = ToolCall(id="c1", function="bash", arguments={"cmd": "rm -rf /"})
    events = [
        SpanBeginEvent(id="s1", name="solvers", type="solvers", timestamp=at(1)),
        ApprovalEvent(message="m", call=call, approver="policy", decision="reject",
                      explanation="dangerous", span_id="s1", timestamp=at(2)),
        # a tool event without a matching [tool] span still becomes an execute_tool span
        ToolEvent(id="c1", function="bash", arguments={"cmd": "ls"}, result="ok", span_id="s1",
                  timestamp=at(3), completed=at(4)),
        SampleLimitEvent(type="message", message="message limit 5 reached", limit=5,
                         span_id="s1", timestamp=at(5)),
        SpanEndEvent(id="s1", timestamp=at(6)),
    ]
    telemetry = map_sample(sample(events, limit=EvalSampleLimit(type="message", limit=5)), CTX,
                           ContentPolicy())
    solvers = next(s for s in telemetry.spans if s.name == "solvers")
    names = [e.name for e in solvers.events]
    assert names == ["inspect.approval", "inspect.sample.limit"]
    approval = solvers.events[0].attributes
    assert approval["inspect.approval.decision"] == "reject"
    assert "inspect.approval.explanation" not in approval  # content off
    tool = next(s for s in telemetry.spans if s.name == "execute_tool bash")
    assert tool.parent_span_id == solvers.span_id
    assert tool.start_ns < tool.end_ns
    root = telemetry.root
    assert root.attributes["inspect.sample.status"] == "limit"
    assert root.attributes["inspect.sample.limit.type"] == "message"
    assert root.attributes["inspect.sample.limit.value"] == 5.0
    assert root.attributes["gen_ai.provider.name"] == "openai"


def test_mapping_is_deterministic():
    events = [SpanBeginEvent(id="s1", name="solvers", type="solvers", timestamp=at(1)),
              SpanEndEvent(id="s1", timestamp=at(2))]
    first = map_sample(sample(events), CTX, ContentPolicy())
    second = map_sample(sample(events), CTX, ContentPolicy())
    assert first == second
    assert len({s.span_id for s in first.spans}) == len(first.spans)
