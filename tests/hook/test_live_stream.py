"""Live export: a real eval with slow tools against an OTLP endpoint that stamps arrival times.

Spans leave as each completes (not at sample end), each exactly once, and equal the replay of the
log; a retried sample keeps its failed attempt's spans; a crashed or time-limited sample's root
ends with its status and its children stay valid. ``INSPECT_OTEL_LIVE=false`` restores export at
sample end.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter

import pytest

from inspect_otel.mapping._common import to_ns
from inspect_otel.replay import export_logs
from tests.support.capture import hook_env
from tests.support.evals import run_slow
from tests.support.otlp_sink import HttpSink

STEP_S = 1.5  # each tool call sleeps this long; the BSP schedule delay is 0.5 s
STATUS_ERROR = 2


def _run(tmp, env: dict[str, str], **kwargs):
    server = HttpSink()
    with pytest.MonkeyPatch.context() as mp:
        hook_env(mp, server.endpoint, env)
        log = run_slow(tmp, seconds=STEP_S, **kwargs)
        assert server.sink.wait_for(
            lambda s: any(x.attributes.get("inspect.span.kind") == "run" for x in s.spans), 30)
    server.stop()
    return log, server.sink


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("live"),
                {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"})


def _trace(sink, log, sample_id):
    sample = next(s for s in log.samples if s.id == sample_id)
    root = next(s for s in sink.spans if s.attributes.get("inspect.sample.uuid") == sample.uuid
                and s.attributes.get("inspect.span.kind") == "sample")
    return sample, root, [s for s in sink.spans if s.trace_id == root.trace_id]


def _tools(spans):
    return sorted((s for s in spans if s.name == "execute_tool wait"), key=lambda s: s.end_ns)


def test_spans_arrive_while_their_sample_runs(live):
    log, sink = live
    sample, root, spans = _trace(sink, log, "ok")
    tools = _tools(spans)
    assert len(tools) == 3
    # the first tool call's span is at the endpoint while the later calls still sleep
    assert tools[0].arrived_ns < tools[-1].end_ns, (tools[0].arrived_ns, tools[-1].end_ns)
    # the model calls before the last one too, and the root only once the sample ended
    chats = sorted((s for s in spans if s.name.startswith("chat ")), key=lambda s: s.end_ns)
    assert all(c.arrived_ns < to_ns(sample.completed_at) for c in chats[:-1])
    assert root.arrived_ns >= to_ns(sample.completed_at)
    # a sample stopped by its time limit: its first call had left long before
    sample, root, spans = _trace(sink, log, "limit")
    assert _tools(spans)[0].arrived_ns < to_ns(sample.completed_at)


def test_each_span_and_result_exactly_once(live):
    log, sink = live
    twice = {k: n for k, n in Counter((s.trace_id, s.span_id) for s in sink.spans).items() if n > 1}
    assert twice == {}
    results = Counter((r.trace_id, r.span_id, r.attributes["gen_ai.evaluation.name"])
                      for r in sink.logs if r.event_name == "gen_ai.evaluation.result")
    assert results and set(results.values()) == {1}
    assert len(results) == sum(len(s.scores or {}) for s in log.samples)


def test_spans_equal_the_replay_of_the_log(live, monkeypatch):
    log, sink = live
    replay = HttpSink()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", replay.endpoint)
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        summary = export_logs([log.location])
        assert summary.ok and summary.samples == 4
        run_trace = next(s.trace_id for s in sink.spans
                         if s.attributes.get("inspect.span.kind") == "run")  # timing differs
        replayed = {(s.trace_id, s.span_id): s for s in replay.sink.spans
                    if s.trace_id != run_trace}
        live_spans = {(s.trace_id, s.span_id): s for s in sink.spans if s.trace_id != run_trace}
        # replay sends the final attempts: every one of its spans is the live span, field by field
        assert set(replayed) <= set(live_spans)
        for key, span in replayed.items():
            mine = live_spans[key]
            assert span == mine, (span.name, _diff(span, mine))
        # ... and live sent exactly that plus the failed attempts of the retried samples
        extra = [live_spans[k] for k in set(live_spans) - set(replayed)]
        assert extra and all(_attempt(s, live_spans) == 1 for s in extra)
        assert {_trace_sample(s, sink) for s in extra} == {"crash", "retry"}
    finally:
        replay.stop()


def _diff(a, b):
    fields = ("name", "parent_span_id", "start_ns", "end_ns", "events", "links", "status_code",
              "status_message", "resource", "scope")
    out = {f: (getattr(a, f), getattr(b, f)) for f in fields if getattr(a, f) != getattr(b, f)}
    out.update({k: (a.attributes.get(k), b.attributes.get(k))
                for k in a.attributes.keys() | b.attributes.keys()
                if a.attributes.get(k) != b.attributes.get(k)})
    return out


def _attempt(span, by_id):
    while "inspect.sample.attempt" not in span.attributes:
        span = by_id[(span.trace_id, span.parent_span_id)]
    return span.attributes["inspect.sample.attempt"]


def _trace_sample(span, sink):
    root = next(s for s in sink.spans if s.trace_id == span.trace_id and not s.parent_span_id)
    return root.attributes["inspect.sample.id"]


def test_a_retried_sample_keeps_its_failed_attempt(live):
    log, sink = live
    sample, root, spans = _trace(sink, log, "retry")
    assert root.status_code != STATUS_ERROR and root.attributes["inspect.sample.retries"] == 1
    retry = [e for e in root.events if e[0] == "inspect.sample.retry"]
    assert retry[0][2]["inspect.retry.attempt"] == 1
    assert "the tool crashed" in retry[0][2]["exception.message"]
    top = Counter((s.name, s.attributes["inspect.sample.attempt"])
                  for s in spans if s.parent_span_id == root.span_id)
    assert top[("solvers", 1)] == top[("solvers", 2)] == 1  # both attempts, side by side
    by_id = {(s.trace_id, s.span_id): s for s in sink.spans}
    first = [s for s in spans if s is not root and _attempt(s, by_id) == 1]
    assert len(_tools(first)) == 2  # step 0 and the call that crashed
    # the failed attempt's top-level span carries its error; the final attempt's none
    failed = {s.name: s for s in first if s.parent_span_id == root.span_id}
    assert failed["solvers"].status_code == STATUS_ERROR
    assert "the tool crashed" in failed["solvers"].status_message
    assert failed["solvers"].attributes["error.type"] == "RuntimeError"
    final = [s for s in spans if s is not root and _attempt(s, by_id) == 2]
    assert len(_tools(final)) == 3
    assert all(s.status_code != STATUS_ERROR for s in final if s.parent_span_id == root.span_id)
    assert not {s.span_id for s in first} & {s.span_id for s in final}


@pytest.mark.parametrize("sample_id,status", [("crash", "error"), ("limit", "limit")])
def test_a_crashed_or_stopped_sample_ends_with_its_status(live, sample_id, status):
    log, sink = live
    sample, root, spans = _trace(sink, log, sample_id)
    assert root.attributes["inspect.sample.status"] == status
    assert (root.status_code == STATUS_ERROR) == (status == "error")
    ids = {s.span_id for s in spans}
    for span in spans:  # everything sent stays a valid tree under the root
        assert not span.parent_span_id or span.parent_span_id in ids, span.name
        assert span.end_ns >= span.start_ns


def test_live_off_sends_each_sample_at_its_end(tmp_path):
    log, sink = _run(tmp_path, {"INSPECT_OTEL_LIVE": "false"}, samples=("ok",))
    sample, root, spans = _trace(sink, log, "ok")
    assert len(_tools(spans)) == 3
    assert min(s.arrived_ns for s in spans) >= to_ns(sample.completed_at)


def test_a_running_sample_is_announced_once_in_its_trace(live):
    """The running marker: one inspect.sample.start event per sample (not per attempt) in the
    trace's context, with the identity its root carries, while the sample runs."""
    log, sink = live
    starts = [r for r in sink.logs if r.event_name == "inspect.sample.start"]
    assert len(starts) == len(log.samples)
    for sample in log.samples:
        _, root, _ = _trace(sink, log, sample.id)
        start = next(r for r in starts if r.trace_id == root.trace_id)
        assert start.span_id == root.span_id
        assert start.arrived_ns < to_ns(sample.completed_at)
        identity = {k: v for k, v in start.attributes.items()
                    if k not in ("gen_ai.operation.name", "inspect.span.kind")}
        assert identity and all(root.attributes[k] == v for k, v in identity.items())


def test_sigkill_keeps_what_left_and_replay_of_the_recovered_log_completes_it(tmp_path):
    """An eval killed with SIGKILL mid-sample: the spans that left stay; Inspect's recovered log,
    replayed, completes the trace (root included) with the same ids and the same spans."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from inspect_ai.log import recover_eval_log

    server = HttpSink()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "INSPECT_OTEL_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=server.endpoint, OTEL_METRICS_EXPORTER="none")
    code = ("import sys; from pathlib import Path; from tests.support.evals import run_slow; "
            "run_slow(Path(sys.argv[1]), seconds=2.0, samples=('ok',))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "logs")],
                            cwd=str(Path(__file__).resolve().parents[2]), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert server.sink.wait_for(
            lambda s: sum(x.name == "execute_tool wait" for x in s.spans) >= 1, 90)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        time.sleep(1.0)
        sent = {(s.trace_id, s.span_id): s for s in server.sink.spans}
        assert sent and not any(s.attributes.get("inspect.span.kind") == "sample"
                                for s in sent.values())  # the sample never ended
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    crashed = next((tmp_path / "logs").glob("*.eval"))
    recovered = recover_eval_log(str(crashed), output=str(tmp_path / "recovered.eval"))
    assert recovered.samples and recovered.samples[0].events

    replay = HttpSink()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", replay.endpoint)
            summary = export_logs([str(tmp_path / "recovered.eval")])
        assert summary.ok and summary.samples == 1
        replayed = {(s.trace_id, s.span_id): s for s in replay.sink.spans}
    finally:
        replay.stop()
    for key, span in sent.items():  # every span that left is in the replay, unchanged
        # (but the resource: another process, another service.instance.id)
        again = dataclasses.replace(replayed[key], resource=span.resource)
        assert again == span, (span.name, _diff(again, span))
    root = next(s for s in replayed.values() if s.attributes.get("inspect.span.kind") == "sample")
    assert {k[0] for k in sent} == {root.trace_id}
    by_id = {s.span_id for s in replayed.values() if s.trace_id == root.trace_id}
    assert all(not s.parent_span_id or s.parent_span_id in by_id
               for s in replayed.values() if s.trace_id == root.trace_id)


def test_a_sample_torn_down_before_its_end_gets_a_cancelled_root(tmp_path, monkeypatch):
    """A task torn down mid-sample (Inspect calls no on_sample_end; a real eval gets there on a
    hard cancel): at run end the sample's root ends as cancelled, after the spans that left, in
    the same trace. The hook is driven with Inspect's own hook data, from a real log."""
    import asyncio

    from inspect_ai.hooks import RunEnd, RunStart, SampleEvent, SampleStart, TaskStart
    from inspect_ai.log import EvalSampleSummary

    from inspect_otel.hook import OtelHooks
    from tests.support.evals import run_simple

    log = run_simple(tmp_path / "logs", count=1)
    sample = log.samples[0]
    server = HttpSink()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        hooks = OtelHooks()
        ids_ = dict(eval_set_id=None, run_id="torn-run")
        summary = EvalSampleSummary(id=sample.id, epoch=sample.epoch, uuid=sample.uuid,
                                    input=sample.input, target=sample.target,
                                    started_at=sample.started_at)
        spec = log.eval.model_copy(update={"run_id": "torn-run"})

        async def drive() -> None:
            await hooks.on_run_start(RunStart(task_names=["t"], **ids_))
            await hooks.on_task_start(TaskStart(eval_id=spec.eval_id, spec=spec, plan=log.plan,
                                                **ids_))
            await hooks.on_sample_start(SampleStart(eval_id=spec.eval_id, sample_id=sample.uuid,
                                                    summary=summary, **ids_))
            half = sample.events[: len(sample.events) // 2]
            for event in half:
                await hooks.on_sample_event(SampleEvent(eval_id=spec.eval_id,
                                                        sample_id=sample.uuid, event=event, **ids_))
            await hooks.on_run_end(RunEnd(exception=KeyboardInterrupt(), logs=[], **ids_))

        asyncio.run(drive())
        assert hooks._live == {}  # released
        assert server.sink.wait_for(
            lambda s: any(x.attributes.get("inspect.span.kind") == "sample" for x in s.spans), 30)
    finally:
        server.stop()
    trace = [s for s in server.sink.spans if s.attributes.get("inspect.sample.uuid") == sample.uuid
             or s.trace_id == next(r.trace_id for r in server.sink.spans
                                   if r.attributes.get("inspect.sample.uuid") == sample.uuid)]
    root = next(s for s in trace if s.attributes.get("inspect.span.kind") == "sample")
    assert root.attributes["inspect.sample.status"] == "cancelled" and root.status_code == STATUS_ERROR
    assert len(trace) > 1
    ids = {s.span_id for s in trace}
    assert all(not s.parent_span_id or s.parent_span_id in ids for s in trace)
    assert Counter(s.span_id for s in trace).most_common(1)[0][1] == 1


@pytest.mark.parametrize("sample_id", ["crash", "retry"])
def test_the_spans_a_raised_exception_ended_carry_it(live, sample_id):
    """Errors where they happened: the tool call that raised, and the solver it raised through,
    end with status ERROR, error.type and an exception event (message and traceback), not only
    the root. For the retried sample: its failed attempt's spans."""
    log, sink = live
    sample, root, spans = _trace(sink, log, sample_id)
    raised = [s for s in _tools(spans) if s.status_code == STATUS_ERROR]
    # one per attempt that raised: "crash" raises on its retry too (retry_on_error=1)
    assert len(raised) == {"crash": 2, "retry": 1}[sample_id], [s.status_code for s in _tools(spans)]
    by_id = {s.span_id: s for s in spans}
    generates = [by_id[tool.parent_span_id] for tool in raised]
    assert {g.name for g in generates} == {"solver generate"}
    for span in (*raised, *generates):
        assert span.status_code == STATUS_ERROR
        assert span.attributes["error.type"] == "RuntimeError"
        assert f"{sample_id}: the tool crashed" in span.status_message
        exception = [a for (name, _, a) in span.events if name == "exception"]
        assert len(exception) == 1, span.events
        assert exception[0]["exception.type"] == "RuntimeError"
        assert f"{sample_id}: the tool crashed" in exception[0]["exception.message"]
        assert "Traceback" in exception[0]["exception.stacktrace"]
    # the tool calls that did not raise are fine
    assert [s for s in _tools(spans) if s.status_code != STATUS_ERROR]
