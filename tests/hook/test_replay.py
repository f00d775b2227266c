"""`inspect-otel export`: a replayed log yields the live export's spans, field by field."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inspect_otel.replay import export_logs, find_logs
from tests.support.evals import run_simple
from tests.support.otlp_sink import HttpSink, free_port

from tests.support.capture import capture

CLI = str(Path(sys.executable).with_name("inspect-otel"))


def _comparable(span):
    return (span.trace_id, span.span_id, span.parent_span_id, span.name, span.kind, span.start_ns,
            span.end_ns, span.attributes, span.events, span.links, span.status_code,
            span.status_message)


def _attempt(span, spans_by_id):
    """The attempt a span belongs to: the one named on its top-level ancestor (root: final)."""
    while span.parent_span_id and span.parent_span_id in spans_by_id:
        if "inspect.sample.attempt" in span.attributes:
            return span.attributes["inspect.sample.attempt"]
        span = spans_by_id[span.parent_span_id]
    return 10**6


def _final_attempt(span, spans):
    root = next(r for r in spans if r.trace_id == span.trace_id and not r.parent_span_id)
    return root.attributes["inspect.sample.retries"] + 1


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    yield from capture(
        tmp_path_factory.mktemp("live"),
        {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"},
    )


def test_replay_reproduces_the_live_export_field_by_field(live, monkeypatch):
    server = HttpSink()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        summary = export_logs([live.log.location])
        assert summary.ok, summary.failed_files
        assert summary.samples == 10 and summary.logs == 1
        live_samples = {
            s.span_id: s for s in live.sink.spans
            if s.trace_id not in {r.trace_id for r in live.sink.spans
                                  if r.attributes.get("inspect.span.kind") in ("run", "task")}
        }
        # Live, a retried sample's failed attempts left too; a log holds only the final attempt.
        failed = {span_id for span_id, s in live_samples.items()
                  if _attempt(s, live_samples) < _final_attempt(s, live.sink.spans)}
        assert failed  # the flaky and boom samples were retried
        final = {k: v for k, v in live_samples.items() if k not in failed}
        assert server.sink.wait_for(
            lambda s: len(s.spans) >= len(live.sink.spans) - len(failed), timeout=30)
        replayed = {s.span_id: s for s in server.sink.spans if s.span_id in live_samples}
        assert len(replayed) == len(final) > 100
        live_samples = final
        for span_id, span in live_samples.items():
            assert _comparable(replayed[span_id]) == _comparable(span), span.name
        # the task span too: same ids, timing from the log, same results
        live_task = next(s for s in live.sink.spans if s.attributes.get("inspect.span.kind") == "task")
        task = next(s for s in server.sink.spans if s.attributes.get("inspect.span.kind") == "task")
        diff = {k: (task.attributes.get(k), live_task.attributes.get(k))
                for k in task.attributes.keys() | live_task.attributes.keys()
                if task.attributes.get(k) != live_task.attributes.get(k)}
        assert diff == {}
        assert _comparable(task) == _comparable(live_task)
        # evaluation results: same records, same trace context
        key = lambda r: (r.trace_id, r.span_id, r.attributes["gen_ai.evaluation.name"])  # noqa: E731
        results = [r for r in live.sink.logs if r.event_name == "gen_ai.evaluation.result"]
        assert sorted(map(key, server.sink.logs)) == sorted(map(key, results))
        # no metrics from a replay (they would double count)
        assert "/v1/metrics" not in server.sink.requests
    finally:
        server.stop()


def test_cli_export_dir_dry_run_and_errors(tmp_path):
    logs_dir = tmp_path / "logs" / "nested"
    run_simple(logs_dir, count=2, log_format="json")
    (tmp_path / "logs" / "eval-set.json").write_text("{}")  # eval-set metadata is not a log
    foreign = tmp_path / "notes.json"
    foreign.write_text(json.dumps({"hello": "world"}))

    dry = subprocess.run([CLI, "export", str(tmp_path / "logs"), "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "would send: 1 logs, 2 samples" in dry.stdout

    server = HttpSink()
    try:
        sent = subprocess.run([CLI, "export", str(tmp_path / "logs"), str(foreign),
                               str(tmp_path / "missing.eval"), "--endpoint", server.endpoint],
                              capture_output=True, text=True, timeout=120)
        assert sent.returncode == 1  # the good log was sent, the bad inputs are reported
        assert "sent: 1 logs, 2 samples" in sent.stdout
        assert f"error: {foreign}: not a readable Inspect log" in sent.stderr or \
            f"error: {foreign}: not an Inspect eval log" in sent.stderr
        assert "missing.eval: no such file or directory" in sent.stderr
        roots = [s for s in server.sink.spans if s.attributes.get("inspect.span.kind") == "sample"]
        assert len(roots) == 2
    finally:
        server.stop()


def test_cli_export_unreachable_endpoint_exits_non_zero(tmp_path):
    log = run_simple(tmp_path / "logs", count=1)
    result = subprocess.run(
        [CLI, "export", log.location, "--endpoint", f"http://127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=240,
        env={**_base_env(), "OTEL_EXPORTER_OTLP_TIMEOUT": "1", "INSPECT_OTEL_FLUSH_TIMEOUT": "2"},
    )
    assert result.returncode == 1
    assert "spans were not confirmed by the endpoint" in result.stderr


def test_cli_without_endpoint_explains(tmp_path):
    result = subprocess.run([CLI, "export", str(tmp_path)], capture_output=True, text=True,
                            timeout=60, env=_base_env())
    assert result.returncode == 2 and "no endpoint" in result.stderr


def test_find_logs_walks_directories(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.eval").write_bytes(b"")
    (tmp_path / "a" / "y.json").write_text("{}")
    (tmp_path / "a" / "logs.json").write_text("{}")
    (tmp_path / "a" / "readme.txt").write_text("")
    found, problems = find_logs([tmp_path, tmp_path / "a" / "readme.txt"])
    assert [p.name for p in found] == ["x.eval", "y.json"]
    assert problems == [(str(tmp_path / "a" / "readme.txt"),
                         "not an Inspect log (expected a .eval or .json file)")]


def _base_env():
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "INSPECT_OTEL_"))}


assert shutil.which(CLI) or Path(CLI).exists()
