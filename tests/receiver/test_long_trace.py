"""A 200-turn agent sample with content capture and the raw provider call, through the live hook
and a real receiver process into the session's real MLflow server (issue 25): the trace lands
whole, its assessments with it, and scout-import and compare read it. The hook side of long
traces (budget, redaction, live equals replay) is tests/hook/test_long_traces.py."""

from __future__ import annotations

import pytest
from inspect_ai import eval

from inspect_otel import semconv as sc
from tests.scout.support import import_into, read_transcripts
from tests.support.capture import hook_env
from tests.support.long_agent import MODEL, long_agent, model_args
from tests.support.receiver import start_receiver
from tests.support.wait import wait_for

EXPERIMENT = "long-trace"
TURNS = 200


@pytest.fixture(scope="module")
def landed(mlflow_server, mlflow_client, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("long-trace")
    receiver = start_receiver(mlflow_server.url, tmp / "data", EXPERIMENT, settle=1.0)
    try:
        with pytest.MonkeyPatch.context() as mp:
            hook_env(mp, receiver.url, {
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT",
                "INSPECT_OTEL_CAPTURE_PROVIDER_CALL": "true", "OTEL_METRICS_EXPORTER": "none"})
            log = eval(long_agent(turns=TURNS, samples=1), model=MODEL, model_args=model_args(),
                       log_dir=str(tmp / "logs"), display="none", log_model_api=True)[0]
        assert log.status == "success"
        receiver.wait_idle(300)
        experiment = mlflow_client.get_experiment_by_name(EXPERIMENT).experiment_id

        def sample_trace():
            traces = mlflow_client.search_traces(
                locations=[experiment], max_results=5,
                filter_string=f"tags.`{sc.INSPECT_SPAN_KIND}` = 'sample'")
            return traces[0] if traces and traces[0].info.state == "OK" else None

        trace = wait_for(sample_trace, 120, what="the long sample's trace, finished")
        yield log, experiment, trace
    finally:
        receiver.kill()


def test_the_long_trace_lands_whole(landed, mlflow_client):
    log, _, trace = landed
    spans = mlflow_client.get_trace(trace.info.trace_id).data.spans
    names = [s.name for s in spans]
    assert names.count(f"chat {MODEL.split('/', 1)[1]}") == TURNS
    assert names.count("execute_tool read_file") == TURNS - 2
    assert names.count("execute_tool lookup") == 1
    ids = {s.span_id for s in spans}
    assert all(s.parent_id is None or s.parent_id in ids for s in spans)  # no span lost
    (root,) = [s for s in spans if s.parent_id is None]
    assert root.attributes[sc.INSPECT_SAMPLE_MODEL_CALLS] == TURNS
    # every turn's content is on its own span: the last tool result, whole
    last_tool = max((s for s in spans if s.name == "execute_tool read_file"),
                    key=lambda s: s.start_time_ns)
    assert len(last_tool.attributes[sc.GEN_AI_TOOL_CALL_RESULT]) > 3000
    assessments = mlflow_client.get_trace(trace.info.trace_id).info.assessments
    assert [a.name for a in assessments] == ["includes"]


def test_scout_import_reads_the_long_trace(landed, mlflow_server, tmp_path):
    from inspect_otel.scout import ImportReport, mlflow_transcripts

    log, _, _ = landed
    report = ImportReport()
    import_into(tmp_path / "db", mlflow_transcripts(EXPERIMENT, mlflow_server.url, report=report))
    assert report.transcripts == 1 and not report.problems
    (transcript,) = read_transcripts(tmp_path / "db").values()
    models = [e for e in transcript.events if e.event == "model"]
    tools = [e for e in transcript.events if e.event == "tool"]
    assert len(models) == TURNS and len(tools) == TURNS - 1
    assert transcript.total_tokens == log.samples[0].model_usage[MODEL].total_tokens
    # the conversation, fitted to the budget on every span, whole again (scout/_conversation.py)
    assert [m.id for m in transcript.messages] == [m.id for m in log.samples[0].messages]
    assert [len(e.input) for e in models] == [len(e.input) for e in log.samples[0].events
                                              if e.event == "model"]


def test_compare_reads_the_long_run_and_its_log(landed, mlflow_client, mlflow_server):
    from inspect_otel.compare import compare_evals

    log, experiment, _ = landed
    (run,) = mlflow_client.search_runs(
        [experiment], f"tags.`{sc.INSPECT_EVAL_ID}` = '{log.eval.eval_id}'")
    result = compare_evals(log.location, run.info.run_id, tracking_uri=mlflow_server.url)
    (scorer,) = result.scorers
    assert scorer.n == 1 and scorer.baseline_mean == scorer.candidate_mean == 1.0
