"""The real Inspect eval loop -> the hook -> a real OTLP/HTTP socket -> decoded protobuf."""

from __future__ import annotations

import json
from collections import Counter

from inspect_otel import ids
from inspect_otel.mapping._common import to_ns
from tests.support.evals import SECRET, USAGE

SPAN_KIND_CLIENT = 3  # protobuf Span.SpanKind
STATUS_ERROR = 2


def _by_id(run):
    return {(s.trace_id, s.span_id): s for s in run.sink.spans}


def test_one_trace_per_sample_epoch_rooted_in_invoke_agent(content_run):
    log = content_run.log
    roots = content_run.roots()
    assert len(roots) == len(log.samples) == 10
    assert len({r.trace_id for r in roots}) == 10
    for sample in log.samples:
        root = next(r for r in roots if r.attributes["inspect.sample.uuid"] == sample.uuid)
        assert root.name == "invoke_agent calculator"
        assert root.parent_span_id == ""
        assert root.trace_id == ids.trace_id_hex(ids.sample_trace_id(sample.uuid))
        a = root.attributes
        assert a["gen_ai.operation.name"] == "invoke_agent"
        assert a["inspect.run_id"] == log.eval.run_id
        assert a["inspect.eval_id"] == log.eval.eval_id
        assert a["inspect.sample.id"] == str(sample.id)
        assert a["inspect.sample.epoch"] == sample.epoch
        assert a["inspect.model"] == "mockllm/model"
        # the root links to its task span in the run trace
        task = content_run.spans_named("invoke_workflow calculator")[0]
        assert root.links == [(task.trace_id, task.span_id)]


def test_every_span_has_a_parent_in_its_own_trace(content_run):
    index = _by_id(content_run)
    for span in content_run.sink.spans:
        if span.parent_span_id:
            assert (span.trace_id, span.parent_span_id) in index, span.name


def test_run_and_task_spans_form_their_own_trace(content_run):
    log = content_run.log
    run = content_run.spans_named("invoke_workflow inspect.run")
    task = content_run.spans_named("invoke_workflow calculator")
    assert len(run) == 1 and len(task) == 1
    run, task = run[0], task[0]
    assert run.trace_id == task.trace_id == ids.trace_id_hex(ids.run_trace_id(log.eval.run_id))
    assert task.parent_span_id == run.span_id
    assert run.attributes["inspect.run.status"] == "success"
    t = task.attributes
    assert t["inspect.task.status"] == "success"
    assert t["inspect.task.samples.total"] == 10
    assert t["inspect.task.samples.errored"] == 2
    assert t["inspect.task.epochs"] == 2
    assert t["inspect.dataset.samples"] == 5
    # every scorer/metric value of the log is on the task span
    rows = json.loads(t["inspect.task.results"])
    expected = {
        (s.name, m.name): m.value for s in log.results.scores for m in s.metrics.values()
    }
    assert {(r["name"], r["metric"]): r["value"] for r in rows} == expected
    assert t["inspect.task.metric.match/accuracy"] == expected[("match", "accuracy")]
    usage = json.loads(t["inspect.task.model_usage"])
    assert usage["mockllm/model"]["input_tokens"] == log.stats.model_usage["mockllm/model"].input_tokens
    # task timing is the log's own
    assert task.start_ns == to_ns(log.stats.started_at)
    assert task.end_ns == to_ns(log.stats.completed_at)


def test_inspect_span_tree_is_preserved(content_run):
    index = _by_id(content_run)
    sample = next(s for s in content_run.log.samples if s.id == "a" and s.epoch == 1)
    root = next(r for r in content_run.roots() if r.attributes["inspect.sample.uuid"] == sample.uuid)

    def parent_name(span):
        return index[(span.trace_id, span.parent_span_id)].name

    in_trace = [s for s in content_run.sink.spans if s.trace_id == root.trace_id]
    names = Counter(s.name for s in in_trace)
    assert names["solvers"] == names["scorers"] == names["init"] == 1
    for span in in_trace:
        if span.name in ("solvers", "scorers", "init"):
            assert span.parent_span_id == root.span_id
        elif span.name.startswith("solver "):
            assert parent_name(span) == "solvers"
        elif span.name.startswith("scorer "):
            assert parent_name(span) == "scorers"
        elif span.name == "prepare":  # a user span from inspect_ai.util.span
            assert parent_name(span) == "solver chaos"
        elif span.name.startswith("execute_tool"):
            assert parent_name(span) == "solver generate"
    # the judge's model call is inside the judge scorer span, which is marked model-graded
    judge = next(s for s in in_trace if s.name == "scorer judge")
    assert judge.attributes["inspect.scorer.model_graded"] is True
    assert [s for s in in_trace if s.parent_span_id == judge.span_id][0].name == "chat model"
    match = next(s for s in in_trace if s.name == "scorer match")
    assert match.attributes["inspect.scorer.model_graded"] is False


def test_model_call_spans_follow_genai_semconv_and_log_timing(content_run):
    sample = next(s for s in content_run.log.samples if s.id == "b" and s.epoch == 2)
    events = {e.uuid: e for e in sample.events if e.event == "model"}
    chats = [s for s in content_run.spans_named("chat ") if s.attributes["inspect.event.uuid"] in events]
    assert len(chats) == len(events) == 4
    for span in chats:
        event = events[span.attributes["inspect.event.uuid"]]
        a = span.attributes
        assert span.kind == SPAN_KIND_CLIENT
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "mockllm"
        assert a["gen_ai.request.model"] == "model"
        assert a["gen_ai.response.model"] == "model"
        # semconv input tokens include cache reads; Inspect's exclude them
        assert a["gen_ai.usage.input_tokens"] == USAGE["input_tokens"] + USAGE["input_tokens_cache_read"]
        assert a["gen_ai.usage.cache_read.input_tokens"] == USAGE["input_tokens_cache_read"]
        assert a["gen_ai.usage.output_tokens"] == USAGE["output_tokens"]
        assert isinstance(a["gen_ai.response.finish_reasons"], tuple)
        # durations are Inspect's recorded timing, not export time
        assert span.start_ns == to_ns(event.timestamp)
        assert span.end_ns == to_ns(event.completed)
    finish = Counter(r for s in chats for r in s.attributes["gen_ai.response.finish_reasons"])
    assert finish == {"tool_call": 2, "stop": 2}


def test_token_sums_match_the_log_model_usage(content_run):
    log = content_run.log
    chats = content_run.spans_named("chat ")
    usage = log.stats.model_usage["mockllm/model"]
    expected_input = usage.input_tokens + (usage.input_tokens_cache_read or 0) + (
        usage.input_tokens_cache_write or 0
    )
    assert sum(s.attributes["gen_ai.usage.input_tokens"] for s in chats) == expected_input
    assert sum(s.attributes["gen_ai.usage.output_tokens"] for s in chats) == usage.output_tokens
    # and per sample, on each root
    for sample in log.samples:
        root = next(r for r in content_run.roots() if r.attributes["inspect.sample.uuid"] == sample.uuid)
        total = sum(u.total_tokens for u in sample.model_usage.values())
        assert root.attributes["inspect.sample.total_tokens"] == total


def test_tool_spans_carry_name_call_id_and_errors(content_run):
    tools = content_run.spans_named("execute_tool ")
    assert Counter(s.name for s in tools) == {"execute_tool add": 8, "execute_tool divide": 8}
    for span in tools:
        a = span.attributes
        assert a["gen_ai.operation.name"] == "execute_tool"
        assert a["gen_ai.tool.type"] == "function"
        assert a["gen_ai.tool.call.id"]
        assert "gen_ai.tool.call.arguments" in a  # content capture is on in this run
    divide = [s for s in tools if s.name == "execute_tool divide"]
    assert all(s.status_code == STATUS_ERROR and s.attributes["error.type"] for s in divide)
    assert all("division by zero" in s.attributes["inspect.tool.error.message"] for s in divide)


def test_sandbox_commands_are_spans(content_run):
    sandbox = content_run.spans_named("sandbox exec")
    assert sandbox and all(s.attributes["inspect.sandbox.result"] == 0 for s in sandbox)
    assert any("echo" in s.attributes.get("inspect.sandbox.cmd", "") for s in sandbox)


def test_errored_and_retried_samples(content_run):
    roots = content_run.roots()
    boom = [r for r in roots if r.attributes["inspect.sample.id"] == "boom"]
    assert len(boom) == 2
    for root in boom:
        assert root.status_code == STATUS_ERROR
        assert root.attributes["inspect.sample.status"] == "error"
        assert root.attributes["error.type"] == "RuntimeError"
        assert "always fails" in root.attributes["inspect.error.message"]
    ok = [r for r in roots if r.attributes["inspect.sample.id"] == "a"]
    assert all(r.attributes["inspect.sample.model_calls"] == 4 for r in ok)  # 3 agent + 1 judge
    assert all(r.attributes["inspect.sample.tool_calls"] == 2 for r in ok)
    assert all(r.attributes["inspect.sample.tool_errors"] == 1 for r in ok)
    assert all(r.attributes["inspect.sample.model_errors"] == 0 for r in ok)
    # one final result per scorer (match, includes, judge); none for a sample that errored
    assert all(r.attributes["inspect.sample.evaluations"] == 3 for r in ok)
    assert all(r.attributes["inspect.sample.evaluations"] == 0 for r in boom)
    flaky = [r for r in roots if r.attributes["inspect.sample.id"] == "flaky"]
    for root in flaky:
        assert root.status_code != STATUS_ERROR
        assert root.attributes["inspect.sample.retries"] == 1
        retry = [e for e in root.events if e[0] == "inspect.sample.retry"]
        assert len(retry) == 1 and "first attempt fails" in retry[0][2]["exception.message"]
    # one root per sample x epoch: the failed attempt did not produce a second trace
    assert len(flaky) == 2


def test_one_evaluation_result_per_score_as_log_and_span_event(content_run):
    log = content_run.log
    expected = sum(len(s.scores or {}) for s in log.samples)
    logs = [r for r in content_run.sink.logs if r.event_name == "gen_ai.evaluation.result"]
    span_events = [
        (s, e) for s in content_run.sink.spans for e in s.events if e[0] == "gen_ai.evaluation.result"
    ]
    assert len(logs) == len(span_events) == expected == 24
    index = _by_id(content_run)
    for record in logs:
        a = record.attributes
        scorer_span = index[(record.trace_id, record.span_id)]  # in the scored sample's context
        assert scorer_span.name == f"scorer {a['gen_ai.evaluation.name']}"
        assert a["inspect.score.span_id"] == record.span_id
        assert a["inspect.score.intermediate"] is False
        assert a["gen_ai.evaluation.score.value"] in (0.0, 1.0)
        assert "gen_ai.evaluation.explanation" in a  # content on
    labels = Counter(
        r.attributes.get("gen_ai.evaluation.score.label") for r in logs
        if r.attributes["gen_ai.evaluation.name"] == "match"
    )
    assert labels == {"C": 6, "I": 2}
    judge = [r for r in logs if r.attributes["gen_ai.evaluation.name"] == "judge"]
    assert all(r.attributes["inspect.scorer.model_graded"] is True for r in judge)


def test_content_capture_on_uses_semconv_messages_and_redacts(content_run):
    chat = content_run.spans_named("chat ")[0].attributes
    messages = json.loads(chat["gen_ai.input.messages"])
    assert messages[0]["role"] == "user" and messages[0]["parts"][0]["type"] == "text"
    output = json.loads(chat["gen_ai.output.messages"])
    assert output[0]["finish_reason"] in ("tool_call", "stop")
    tools = json.loads(chat["gen_ai.tool.definitions"])
    assert {t["name"] for t in tools} == {"add", "divide"}
    task = content_run.spans_named("invoke_workflow calculator")[0]
    assert SECRET not in task.attributes["inspect.task.args"]
    assert json.loads(task.attributes["inspect.task.args"])["api_key"] == "[REDACTED]"
    assert all(SECRET not in json.dumps(s.attributes, default=str) for s in content_run.sink.spans)


def test_no_content_by_default(private_run):
    content_keys = {
        "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
        "gen_ai.tool.definitions", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
        "gen_ai.evaluation.explanation", "inspect.sample.input", "inspect.sample.output",
        "inspect.sample.target", "inspect.sandbox.cmd", "inspect.sandbox.output",
        "inspect.score.answer", "inspect.sample.messages",
    }
    for span in private_run.sink.spans:
        assert not content_keys & span.attributes.keys(), span.name
        for _, _, attrs in span.events:
            assert not content_keys & attrs.keys()
    for record in private_run.sink.logs:
        assert not content_keys & record.attributes.keys()
    # ... while the structure and numbers are all there
    assert private_run.spans_named("execute_tool add")
    assert all("gen_ai.usage.input_tokens" in s.attributes for s in private_run.spans_named("chat "))


def test_metrics_follow_genai_metric_conventions(content_run):
    assert content_run.sink.wait_for(lambda s: "inspect.samples" in s.metrics, timeout=20)
    metrics = content_run.sink.metrics
    tokens = metrics["gen_ai.client.token.usage"][-1]
    assert tokens.unit == "{token}"
    points = tokens.histogram.data_points
    assert list(points[0].explicit_bounds)[:3] == [1, 4, 16]
    types = {next(a.value.string_value for a in p.attributes if a.key == "gen_ai.token.type") for p in points}
    assert types == {"input", "output"}
    keys = {a.key for a in points[0].attributes}
    assert {"gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model"} <= keys
    duration = metrics["gen_ai.client.operation.duration"][-1]
    assert duration.unit == "s"
    assert list(duration.histogram.data_points[0].explicit_bounds)[:2] == [0.01, 0.02]
    samples = metrics["inspect.samples"][-1].sum.data_points
    by_status = {
        next(a.value.string_value for a in p.attributes if a.key == "inspect.sample.status"): p.as_int
        for p in samples
    }
    assert by_status == {"success": 8, "error": 2}
    tools = metrics["inspect.tool.calls"][-1].sum.data_points
    by_tool = {
        tuple(sorted((a.key, a.value.string_value) for a in p.attributes)): p.as_int for p in tools
    }
    assert by_tool == {
        (("gen_ai.tool.name", "add"),): 8,
        (("error.type", "unknown"), ("gen_ai.tool.name", "divide")): 8,
    }


def test_resource_and_scope(content_run):
    span = content_run.sink.spans[0]
    assert span.resource["service.name"] == "inspect-ai"
    assert span.scope[0] == "inspect_otel"
    assert span.scope[2] == "https://opentelemetry.io/schemas/1.41.0"
