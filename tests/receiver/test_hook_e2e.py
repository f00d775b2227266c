"""Real hook output: an offline Inspect eval (mockllm) exports over OTLP/HTTP to a receiver
process, which writes to the real MLflow server (on sqlite, and on PostgreSQL with several
workers). Asserts what an MLflow user sees."""

from __future__ import annotations

import os

import pytest

from inspect_otel import ids
from inspect_otel import semconv as sc
from inspect_otel.receiver import _mlflow_names
from tests.receiver.mlflow_view import snapshot

EXPERIMENT = "hook-e2e"


@pytest.fixture(scope="module")
def hook_run(mlflow_backend, backend_client, tmp_path_factory):
    from tests.support.receiver import start_receiver
    from tests.support.evals import SECRET, run_calculator

    tmp = tmp_path_factory.mktemp("hook-e2e")
    # the eval logs' root through the environment (the flag is tested in test_log_artifacts)
    rp = start_receiver(mlflow_backend.url, tmp / "data", EXPERIMENT, settle=5.0,
                        env={"INSPECT_OTEL_LOG_ARTIFACT_ROOTS": str(tmp / "logs")})
    try:
        with pytest.MonkeyPatch.context() as m:
            for name in list(os.environ):
                if name.startswith(("OTEL_", "INSPECT_OTEL_")):
                    m.delenv(name)
            m.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rp.url)
            m.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            m.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
            m.setenv("OTEL_METRIC_EXPORT_INTERVAL", "500")
            log = run_calculator(tmp / "logs", epochs=1)
        rp.wait_idle(240)
        yield log, snapshot(backend_client, EXPERIMENT, log.eval.run_id), SECRET, rp
    finally:
        rp.kill()


def test_runs_params_metrics(hook_run):
    log, snap, secret, _ = hook_run
    assert snap["parents"] == 1 and snap["parent"]["traces"] == 1
    task = snap["tasks"][log.eval.task]
    assert task["count"] == 1 and task["parent_ok"]
    assert task["status"] == "FINISHED"
    p = task["params"]
    assert p["task"] == log.eval.task and p["model"] == log.eval.model
    assert not any(secret in v for v in p.values()), "a secret became a param"
    m = task["metrics"]
    for score in log.results.scores:
        for name, metric in score.metrics.items():
            assert abs(m[f"{score.name}/{name}"] - metric.value) < 1e-9, (score.name, name)
    n = len(log.samples)
    assert m["samples/total"] == log.results.total_samples
    assert m["samples/received"] == n
    assert m["model_calls"] > 0 and m["tool_calls"] > 0 and m["tool_errors"] > 0
    assert "sample_latency/p95" in m and any(k.startswith("usage/") for k in m)


def test_step_metrics_tables_traces_assessments(hook_run):
    log, snap, _, _ = hook_run
    task = snap["tasks"][log.eval.task]
    n = len(log.samples)
    steps = [s for s, _, _ in task["history"]["sample/total_time"]]
    assert sorted(steps) == sorted(set(steps)) and len(steps) == n
    rows = task["tables"][_mlflow_names.SAMPLES_TABLE]
    assert isinstance(rows, list) and len(rows) == n
    assert isinstance(task["tables"][_mlflow_names.SCORES_TABLE], list)
    assert isinstance(task["tables"][_mlflow_names.MODEL_USAGE_TABLE], list)
    want = {"tr-" + ids.trace_id_hex(ids.sample_trace_id(s.uuid)) for s in log.samples}
    assert set(task["traces"]) == want
    for sample in log.samples:
        tr = task["traces"]["tr-" + ids.trace_id_hex(ids.sample_trace_id(sample.uuid))]
        types = {t for _, t in tr["spans"]}
        assert "AGENT" in types
        if not sample.error:  # an errored sample ("boom") never reached the model
            assert "CHAT_MODEL" in types and "EVALUATOR" in types
        assert tr["request_preview"] and tr["response_preview"]
        if sample.scores:
            names = {a[0] for a in tr["assessments"]}
            assert set(sample.scores) <= names, (sample.id, names)
            assert len(tr["assessments"]) == len({(a[0], a[3]) for a in tr["assessments"]})
            for name, _value, source, _span, _rationale in tr["assessments"]:
                if name == "judge":
                    assert source == "LLM_JUDGE"
                elif name == "match":
                    assert source == "CODE"


def test_replaying_the_log_twice_changes_nothing(hook_run, backend_client, monkeypatch):
    """inspect-otel export of the same log, twice, into the same receiver: MLflow state is
    exactly what the live export left (same ids all the way, so everything collapses)."""
    from inspect_otel.replay import export_logs

    log, before, _, rp = hook_run
    for name in list(os.environ):
        if name.startswith(("OTEL_", "INSPECT_OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rp.url)
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    for _ in range(2):
        summary = export_logs([log.location])
        assert summary.ok and summary.samples == len(log.samples)
        rp.wait_idle(240)
    after = snapshot(backend_client, EXPERIMENT, log.eval.run_id)
    assert after == before


def test_trace_kind_filter_span_types_and_quiet_output(hook_run, backend_client):
    """One filter in MLflow's Traces table shows only the sample traces (the run trace is the
    other kind); every span has an MLflow span type; the receiver never prints MLflow's
    "View run ... / View experiment ..." lines."""
    log, snap, _, rp = hook_run
    exp = backend_client.get_experiment_by_name(EXPERIMENT)
    samples = {"tr-" + ids.trace_id_hex(ids.sample_trace_id(s.uuid)) for s in log.samples}

    def kind(k: str) -> set[str]:
        return {t.info.trace_id for t in backend_client.search_traces(
            locations=[exp.experiment_id], filter_string=f"tags.inspect.trace.kind = '{k}'",
            include_spans=False, max_results=500)
            if t.info.tags.get(sc.INSPECT_RUN_ID) == log.eval.run_id}

    assert kind("sample") == samples
    assert kind("run") == {"tr-" + ids.trace_id_hex(ids.run_trace_id(log.eval.run_id))}
    task = snap["tasks"][log.eval.task]
    types = [t for tr in task["traces"].values() for _, t in tr["spans"]]
    assert types and all(t not in (None, "", "UNKNOWN") for t in types), sorted(set(map(str, types)))
    assert "CHAIN" in types  # the user span "prepare" (its type is its name) is a step
    # trace token usage = the sample's model usage (summed from its chat spans: the root's copy
    # of the sample total is not forwarded, so MLflow cannot count it twice)
    for sample in log.samples:
        tr = task["traces"]["tr-" + ids.trace_id_hex(ids.sample_trace_id(sample.uuid))]
        want = sum(u.total_tokens for u in (sample.model_usage or {}).values())
        assert (tr["tokens"] or 0) == want, (sample.id, tr["tokens"], want)
    assert "View run" not in rp.log() and "View experiment" not in rp.log()


def test_eval_log_stored_with_the_task_run(hook_run, backend_client, tmp_path):
    log, snap, _, _ = hook_run
    exp = backend_client.get_experiment_by_name(EXPERIMENT)
    (task_run,) = backend_client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{sc.INSPECT_EVAL_ID}` = '{log.eval.eval_id}'")
    name = os.path.basename(log.location)
    stored = [f.path for f in backend_client.list_artifacts(task_run.info.run_id, _mlflow_names.LOG_ARTIFACT_DIR)]
    assert stored == [f"{_mlflow_names.LOG_ARTIFACT_DIR}/{name}"]
    local = backend_client.download_artifacts(task_run.info.run_id, stored[0], str(tmp_path))
    with open(local, "rb") as a, open(log.location, "rb") as b:
        assert a.read() == b.read()
