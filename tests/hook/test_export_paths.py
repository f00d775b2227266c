"""Where the hook sends, and what happens when things go wrong: every case through a real eval."""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from inspect_ai import eval

from inspect_otel.hook import OtelHooks
from tests.support.evals import MODEL, calculator, model_args, run_simple, run_simple_eval_set
from tests.support.otlp_sink import GrpcSink, HttpSink, free_port

REPO = Path(__file__).resolve().parents[2]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def hook_log():
    handler = _Records()
    logger = logging.getLogger("inspect_otel")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def _roots(sink):
    return [s for s in sink.spans if s.attributes.get("inspect.span.kind") == "sample"]


@pytest.mark.parametrize("bsp_delay", [None, "20000"])
def test_a_finished_sample_leaves_while_the_eval_runs(tmp_path, monkeypatch, bsp_delay):
    """A sample's spans and results reach the endpoint within the hook's short schedule delay
    (500 ms), not the SDK's 5 s, while later samples still run; OTEL_BSP_SCHEDULE_DELAY wins."""
    import asyncio

    from inspect_ai import Task
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import match
    from inspect_ai.solver import solver

    server = HttpSink()
    seen: dict[str, bool] = {}

    def first_is_out(s) -> bool:
        return any(r.attributes.get("inspect.sample.id") == "first" for r in _roots(s)) and \
            any(r.attributes.get("gen_ai.evaluation.name") == "match" for r in s.logs)

    @solver
    def look_for_first():
        async def solve(state, generate):
            if state.sample_id == "second":  # the first sample has ended (max_samples=1)
                wait = 3.0 if bsp_delay is None else 1.5
                seen["first"] = await asyncio.to_thread(server.sink.wait_for, first_is_out, wait)
            return state
        return solve

    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        if bsp_delay:
            monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", bsp_delay)
            monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", bsp_delay)
        task = Task(dataset=[Sample(id="first", input="a", target="a"),
                             Sample(id="second", input="b", target="b")],
                    solver=look_for_first(), scorer=match())
        log = eval(task, model=MODEL, model_args=model_args(), log_dir=str(tmp_path),
                   display="none", max_samples=1)[0]
        assert log.status == "success"
        assert seen["first"] is (bsp_delay is None)
        assert server.sink.wait_for(lambda s: len(_roots(s)) == 2, timeout=30)  # run end flushes
    finally:
        server.stop()


def test_grpc_protocol(tmp_path, monkeypatch):
    server = GrpcSink()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        log = run_simple(tmp_path, count=2)
        assert log.status == "success"
        assert server.sink.wait_for(lambda s: len(_roots(s)) == 2 and s.logs, timeout=30)
        assert {s.attributes["inspect.sample.id"] for s in _roots(server.sink)} == {"s0", "s1"}
        assert {r.flags & 0x01 for r in server.sink.logs} == {1}  # results of sampled traces
    finally:
        server.stop()


def test_per_signal_endpoint_and_headers(tmp_path, monkeypatch):
    server = HttpSink()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", server.endpoint + "/v1/traces")
        monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "my-evals")
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")
        run_simple(tmp_path, count=1)
        assert server.sink.wait_for(lambda s: len(_roots(s)) == 1, timeout=30)
        resource = server.sink.spans[0].resource
        assert resource["service.name"] == "my-evals"
        assert resource["deployment.environment"] == "ci"
        assert set(server.sink.requests) == {"/v1/traces"}  # logs and metrics switched off
    finally:
        server.stop()


def test_unreachable_endpoint_eval_completes_with_two_warnings(tmp_path, monkeypatch, hook_log):
    """One when the run starts (the endpoint check), one at its end (what was lost, the command
    that sends it again); the exports failing in between for the same cause say nothing more."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("INSPECT_OTEL_FLUSH_TIMEOUT", "2")
    log = run_simple(tmp_path, count=3)
    assert log.status == "success" and len(log.samples) == 3
    warnings = [r.getMessage() for r in hook_log if r.levelno == logging.WARNING]
    assert len(warnings) == 2, "\n".join(warnings)
    refused = f"connection refused: nothing listens at {endpoint}/v1/traces"
    assert warnings[0].startswith(f"inspect-otel: spans are not reaching the OTLP endpoint: "
                                  f"{refused}; start the collector or receiver there")
    assert "spans were not confirmed" in warnings[1] and refused in warnings[1]
    assert warnings[1].endswith(f"Send them again with: inspect-otel export {log.location}")


def test_disabled_switches(tmp_path, monkeypatch):
    server = HttpSink()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
        monkeypatch.setenv("INSPECT_OTEL_ENABLED", "false")
        run_simple(tmp_path / "a", count=1)
        monkeypatch.setenv("INSPECT_OTEL_ENABLED", "true")
        monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
        run_simple(tmp_path / "b", count=1)
        assert server.sink.requests == []
    finally:
        server.stop()


def test_sampler_from_env(tmp_path, monkeypatch):
    server = HttpSink()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        log = run_simple(tmp_path, count=2)
        assert server.sink.wait_for(lambda s: len(s.logs) == 2, timeout=30)
        assert server.sink.spans == []  # traces sampled out, evaluation results still sent
        # ... saying so: their W3C trace flags are not "sampled", so a backend does not wait for
        # the trace (the receiver expires such results once their task is finalized)
        assert {r.flags & 0x01 for r in server.sink.logs} == {0}
        assert log.status == "success"
    finally:
        server.stop()


def test_eval_set_carries_eval_set_id(tmp_path, monkeypatch):
    server = HttpSink()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
        logs = run_simple_eval_set(tmp_path, count=2)
        eval_set_id = logs[0].eval.eval_set_id
        assert eval_set_id
        assert server.sink.wait_for(lambda s: len(_roots(s)) == 2, timeout=30)
        assert {r.attributes["inspect.eval_set_id"] for r in _roots(server.sink)} == {eval_set_id}
        run = [s for s in server.sink.spans if s.attributes.get("inspect.span.kind") == "run"]
        assert run and run[0].attributes["inspect.eval_set_id"] == eval_set_id
    finally:
        server.stop()


def test_errored_task_ends_with_error_status(tmp_path, monkeypatch):
    """on_task_end does not fire for an errored task: the span is ended at run end."""
    server = HttpSink()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
        logs = eval(calculator(samples=4), model=MODEL, model_args=model_args(),
                    log_dir=str(tmp_path), display="none", fail_on_error=True)
        assert logs[0].status == "error"
        is_task = lambda s: s.attributes.get("inspect.span.kind") == "task"  # noqa: E731
        is_run = lambda s: s.attributes.get("inspect.span.kind") == "run"  # noqa: E731
        assert server.sink.wait_for(lambda s: any(map(is_run, s.spans)), timeout=30)
        task = next(s for s in server.sink.spans if is_task(s))
        run = next(s for s in server.sink.spans if is_run(s))
        assert task.status_code == 2 and task.attributes["inspect.task.status"] == "error"
        assert "boom" in task.attributes["inspect.error.message"]
        assert run.status_code == 2 and run.attributes["inspect.run.status"] == "error"
    finally:
        server.stop()


def test_failure_inside_the_hook_never_reaches_the_eval(tmp_path, monkeypatch, hook_log):
    """Fault injection: the mapping raises. The eval must finish untouched; the rest still flows."""
    server = HttpSink()

    def broken(*args, **kwargs):
        raise ValueError("mapping exploded")

    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
        monkeypatch.setattr("inspect_otel.hook.finish_sample", broken)
        monkeypatch.setattr("inspect_otel.mapping.SampleMapper.feed", broken)
        log = run_simple(tmp_path, count=3)
        assert log.status == "success" and all(s.error is None for s in log.samples)
        assert server.sink.wait_for(
            lambda s: any(x.attributes.get("inspect.span.kind") == "run" for x in s.spans), 30
        )
        for hook in ("on_sample_end", "on_sample_event"):  # the live feed and the sample end
            failures = [r.getMessage() for r in hook_log if f"{hook} failed" in r.getMessage()]
            assert len(failures) == 1  # reported once, not once per sample or event
    finally:
        server.stop()


def test_run_state_is_freed_after_the_run(tmp_path, monkeypatch):
    server = HttpSink()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
        run_simple(tmp_path, count=2)
        hooks = [o for o in gc.get_objects() if isinstance(o, OtelHooks)]
        assert hooks and all(h._runs == {} and h._live == {} for h in hooks)
    finally:
        server.stop()


@pytest.mark.parametrize("processor", ["there", "vanished"])
def test_users_own_tracer_provider_is_used(tmp_path, processor):
    """A process with its own SDK TracerProvider: the hook emits through it (fresh interpreter,
    because a global provider can only be set once per process). The SDK has no public way in for
    a finished span with its own ids: the hook reads the provider's private span processor. An
    SDK without it ("vanished", forced): the spans go to the hook's own OTLP exporter, said once."""
    script = textwrap.dedent(f"""
        import json, logging, os, sys
        sys.path.insert(0, {str(REPO)!r})
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from tests.support.otlp_sink import HttpSink
        warnings = []
        handler = logging.Handler()
        handler.emit = lambda record: warnings.append(record.getMessage())
        logging.getLogger("inspect_otel").addHandler(handler)
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({{"service.name": "users-app"}}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        if {processor!r} == "vanished":  # an SDK that renamed it (Inspect's own tracing uses it)
            import inspect_otel.export._sdk
            inspect_otel.export._sdk._PROVIDERS_PROCESSOR = "_renamed_in_a_later_sdk"
        sink = HttpSink()
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.endpoint
        os.environ["OTEL_LOGS_EXPORTER"] = "none"
        os.environ["OTEL_METRICS_EXPORTER"] = "none"
        from tests.support.evals import run_simple
        run_simple({str(tmp_path)!r}, count=2)
        def roots(spans):
            return sum(1 for s in spans if s.attributes.get("inspect.span.kind") == "sample")
        if {processor!r} == "vanished":  # else nothing comes: waiting would only time out
            sink.sink.wait_for(lambda s: roots(s.spans) == 2, timeout=30)
        print(json.dumps({{
            "users": roots(exporter.get_finished_spans()), "own": roots(sink.sink.spans),
            "services": sorted({{s.resource["service.name"] for s in sink.sink.spans}} |
                               {{s.resource.attributes["service.name"]
                                 for s in exporter.get_finished_spans()}}),
            "said": sum("no span processor" in w for w in warnings),
        }}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    if processor == "there":
        assert summary == {"users": 2, "own": 0, "services": ["users-app"], "said": 0}
    else:
        assert summary == {"users": 0, "own": 2, "services": ["inspect-ai"], "said": 1}


def test_sample_limit_is_visible(tmp_path, monkeypatch):
    server = HttpSink()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
        log = run_simple(tmp_path, count=1, message_limit=3)
        assert log.samples[0].limit is not None
        assert server.sink.wait_for(lambda s: len(_roots(s)) == 1, timeout=30)
        root = _roots(server.sink)[0]
        assert root.attributes["inspect.sample.status"] == "limit"
        assert root.attributes["inspect.sample.limit.type"] == "message"
        limit_events = [e for s in server.sink.spans for e in s.events if e[0] == "inspect.sample.limit"]
        assert limit_events and limit_events[0][2]["inspect.limit.type"] == "message"
    finally:
        server.stop()
