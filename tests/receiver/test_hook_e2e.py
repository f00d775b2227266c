"""Real hook output: an offline Inspect eval (mockllm) exports over OTLP/HTTP to a receiver
process, which writes to the real MLflow server (on sqlite, and on PostgreSQL with several
workers). Asserts what an MLflow user sees."""

from __future__ import annotations

import os

import pytest

from inspect_otel import ids
from inspect_otel import semconv as sc
from inspect_otel.mapping._common import to_ns
from inspect_otel.receiver import _mlflow_names
from tests.receiver.mlflow_view import snapshot

EXPERIMENT = "hook-e2e"
TAGS = ["candidate-v2", "prompt verbose"]


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
            log = run_calculator(tmp / "logs", epochs=1, tags=TAGS,
                                 metadata={"team": "evals", "api_key": SECRET, "round": 2})
        rp.wait_idle(240)
        yield log, snapshot(backend_client, EXPERIMENT, log.eval.run_id), SECRET, rp
    finally:
        rp.kill()


def test_runs_params_metrics(hook_run, backend_client):
    log, snap, secret, _ = hook_run
    assert snap["parents"] == 0 and snap["run_trace"]["linked"] is None
    task = snap["tasks"][log.eval.task]
    assert task["count"] == 1 and task["top_level"]
    assert task["status"] == "FINISHED"
    # Inspect's task stats have whole seconds; the run still ends after its last sample
    last_sample_ms = max(to_ns(s.completed_at) for s in log.samples) // 1_000_000
    exp = backend_client.get_experiment_by_name(EXPERIMENT)
    (run,) = backend_client.search_runs(
        [exp.experiment_id], f"tags.`{sc.INSPECT_EVAL_ID}` = '{log.eval.eval_id}'")
    assert run.info.start_time <= run.info.end_time and run.info.end_time >= last_sample_ms - 1
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


def test_the_task_results_lead_the_run_page(hook_run, backend_client, mlflow_backend):
    """The run page opens with the run's description: the task's results, in Inspect's order.
    Its metrics table lists them in the order MLflow's store returns them: on sqlite the order of
    first logging (the results first, the per-sample step metrics, the last sample's values on
    that page, after everything task-level); PostgreSQL returns its rows' physical order, which
    no writer controls (see docs/receiver.md)."""
    from tests.receiver.mlflow_view import run_page_metric_order, run_page_note

    log, _, _, _ = hook_run
    exp = backend_client.get_experiment_by_name(EXPERIMENT)
    (run,) = backend_client.search_runs(
        [exp.experiment_id], f"tags.`{sc.INSPECT_EVAL_ID}` = '{log.eval.eval_id}'")
    note = run_page_note(backend_client, run.info.run_id).splitlines()
    total, completed = log.results.total_samples, log.results.completed_samples
    assert note[0].startswith(f"**Inspect results** · {completed} of {total} samples"), note
    scores = list(log.results.scores)
    metrics = list(dict.fromkeys(m for s in scores for m in s.metrics))
    assert note[2] == "| score | " + " | ".join(f"`{m}`" for m in metrics) + " |", note
    assert [row.split(" | ")[0] for row in note[4:]] == [f"| `{s.name}`" for s in scores], note
    first = scores[0]
    assert note[4].split(" | ")[1] == format(next(iter(first.metrics.values())).value, ".4g")
    if getattr(mlflow_backend, "postgres", None) is not None:
        return
    order = run_page_metric_order(backend_client, run.info.run_id)
    results = [f"{s.name}/{name}" for s in log.results.scores for name in s.metrics]
    assert order[:len(results)] == results, order
    first_step = min(i for i, k in enumerate(order) if k.startswith("sample/"))
    assert all(k.startswith("sample/") for k in order[first_step:]), order
    assert {"samples/total", "samples/received", "sample_latency/p95"} <= set(order[:first_step])


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
            for name, _value, source, scorer_span, _rationale, on_span in tr["assessments"]:
                # on the trace (it opens with its scores), the scorer span named beside it
                assert on_span == "" and len(scorer_span) == 16
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


def test_labels_tell_runs_apart(hook_run, backend_client):
    """Each task is one top-level MLflow evaluation run named ``tags · model · task · #id``;
    Inspect's eval tags and metadata are run tags (searchable), and the eval tags and the run's
    name are on every sample trace, so MLflow's Traces table filters to one run by tag."""
    from inspect_otel.receiver._trace_labels import TRACE_TAG_RUN_NAME

    log, _, secret, _ = hook_run
    exp = backend_client.get_experiment_by_name(EXPERIMENT)
    found = backend_client.search_runs(
        [exp.experiment_id], filter_string='tags."inspect.tag.candidate-v2" = \'true\'')
    mine = [r for r in found if r.data.tags.get(sc.INSPECT_RUN_ID) == log.eval.run_id]
    assert [r.data.tags[_mlflow_names.TAG_ROLE] for r in mine] == [_mlflow_names.ROLE_TASK]
    (task,) = mine
    assert sorted(log.eval.tags) == sorted(TAGS)
    # the eval tags first (in the log's order): what a run list shows of a name
    assert task.info.run_name == (f"{', '.join(log.eval.tags)} \u00b7 model \u00b7 "
                                  f"{log.eval.task} \u00b7 #{log.eval.eval_id[:6]}")
    tags = task.data.tags
    assert tags["mlflow.runType"] == "genai_evaluate"
    assert _mlflow_names.TAG_PARENT_RUN_ID not in tags
    assert tags["inspect.tag.prompt verbose"] == "true"
    assert tags["inspect.tags"] == ", ".join(log.eval.tags)
    assert tags["inspect.metadata.team"] == "evals" and tags["inspect.metadata.round"] == "2"
    assert not any(secret in v for v in tags.values()), "a secret became a tag"
    assert "inspect.metadata.api_key" not in tags
    traces = backend_client.search_traces(locations=[exp.experiment_id], run_id=task.info.run_id,
                                          max_results=500)
    assert len(traces) == len(log.samples)
    for t in traces:
        assert t.info.tags["inspect.tag.candidate-v2"] == "true"
        assert t.info.tags[TRACE_TAG_RUN_NAME] == task.info.run_name
        assert "mlflow.trace.session" not in t.info.trace_metadata
    # the Traces table's tag filter (the string MLflow's UI sends) finds exactly these traces
    by_tag = backend_client.search_traces(
        locations=[exp.experiment_id], max_results=500,
        filter_string="tags.`inspect.tag.candidate-v2` = 'true' AND "
                      "tags.`inspect.trace.kind` = 'sample'")
    assert {t.info.trace_id for t in by_tag} == {t.info.trace_id for t in traces}


def test_sample_traces_open_on_their_conversation(hook_run, backend_client):
    """With content capture a sample root holds its whole conversation as MLflow chat messages
    (system prompt first) and its agent turns as ``{"messages": [...]}`` outputs; its request is
    ``{sample_id, epoch, input}`` (the same in every run, one per epoch: what MLflow's
    comparison pairs on); the bookkeeping summary tag is under MLflow's hidden prefix."""
    import json

    from inspect_otel.receiver._chat import CHAT_MESSAGES

    log, _, _, _ = hook_run
    done = [s for s in log.samples if not s.error]
    assert done
    for sample in done:
        trace = backend_client.get_trace("tr-" + ids.trace_id_hex(ids.sample_trace_id(sample.uuid)))
        root = next(s for s in trace.data.spans if s.parent_id is None)
        chat = root.attributes[CHAT_MESSAGES]
        assert [m["role"] for m in chat] == [m.role for m in sample.messages]
        assert chat[0]["content"] == sample.messages[0].text
        calls = [c["function"]["name"] for m in chat for c in m.get("tool_calls", [])]
        assert calls == [c.function for m in sample.messages for c in (getattr(m, "tool_calls", None) or [])]
        assert root.inputs == {"sample_id": sample.id, "epoch": sample.epoch,
                               "input": sample.input}
        assert root.outputs["messages"] == chat[-len(root.outputs["messages"]):]
        assert json.loads(trace.info.request_preview)["sample_id"] == sample.id
        tags = trace.info.tags
        assert _mlflow_names.TRACE_TAG_SAMPLE.startswith("mlflow.")
        assert json.loads(tags[_mlflow_names.TRACE_TAG_SAMPLE])["sample_id"] == sample.id
        assert _mlflow_names.LEGACY_TRACE_TAG_SAMPLE not in tags


def test_a_content_off_replay_of_a_relative_path_removes_nothing(hook_run, backend_client,
                                                                 monkeypatch):
    """Replay adds, never removes: the log sent again without content capture, by a relative
    path, leaves the captured content, the assessments and the stored log as they were, and
    adds no log-artifact error."""
    from inspect_otel.replay import export_logs

    log, _, _, rp = hook_run
    exp = backend_client.get_experiment_by_name(EXPERIMENT)

    def state() -> dict:
        (task,) = backend_client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`{sc.INSPECT_EVAL_ID}` = '{log.eval.eval_id}'")
        out = {"tags": {k: v for k, v in task.data.tags.items() if k.startswith("inspect.otel.log")}}
        for t in backend_client.search_traces(locations=[exp.experiment_id],
                                              run_id=task.info.run_id, max_results=500):
            full = backend_client.get_trace(t.info.trace_id)
            out[t.info.trace_id] = (
                full.info.request_preview, full.info.response_preview,
                sorted((s.span_id, sorted((k, str(v)) for k, v in s.attributes.items()))
                       for s in full.data.spans),
                sorted((a.name, str(a.value), a.rationale or "") for a in full.info.assessments))
        return out

    before = state()
    assert any(sc.GEN_AI_INPUT_MESSAGES in str(v) for v in before.values())
    assert before["tags"].get(_mlflow_names.TAG_LOG_ARTIFACT)
    for name in list(os.environ):
        if name.startswith(("OTEL_", "INSPECT_OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rp.url)  # content capture off (default)
    logs_dir = os.path.dirname(log.location)
    monkeypatch.chdir(os.path.dirname(logs_dir))
    relative = os.path.join(os.path.basename(logs_dir), os.path.basename(log.location))
    summary = export_logs([relative])
    assert summary.ok and summary.samples == len(log.samples)
    rp.wait_idle(240)
    assert state() == before


@pytest.mark.postgres
def test_postgresql_lists_metrics_in_physical_row_order(postgres_server, tmp_path):
    """Why the metric order above is asserted on sqlite only: MLflow's SQL store returns a run's
    latest metrics without an ORDER BY, and PostgreSQL reuses the space that updates of other
    runs' metrics free, so a metric logged later can be listed first. If this starts failing,
    MLflow orders them, and the run page order can be asserted on PostgreSQL too."""
    import sqlalchemy as sa
    from mlflow.entities import Metric
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = postgres_server.create_database("metric_order")
    store = SqlAlchemyStore(uri, str(tmp_path / "artifacts"))
    engine = sa.create_engine(uri, isolation_level="AUTOCOMMIT")
    try:
        exp = store.create_experiment("order")
        other = store.create_run(exp, "u", 1, [], "other").info.run_id
        for step in range(4):  # updates leave dead rows in the first pages
            store.log_batch(other, [Metric(f"k{i}", step, 1, step) for i in range(300)], [], [])
        run = store.create_run(exp, "u", 1, [], "task").info.run_id
        store.log_batch(run, [Metric("match/accuracy", 1.0, 1, 0)], [], [])
        with engine.connect() as db:
            db.execute(sa.text("VACUUM latest_metrics"))
        store.log_batch(run, [Metric("model_calls", 3.0, 1, 0)], [], [])
        listed = list(store.get_run(run).data.metrics)
        assert listed == ["model_calls", "match/accuracy"], listed
    finally:
        engine.dispose()
        store.engine.dispose()
