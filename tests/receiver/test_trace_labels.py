"""The labels of a task run on its sample traces, against the real MLflow server: only what a
trace lacks is written, and a trace gone meanwhile is left without holding anything up."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inspect_otel.receiver._trace_labels import TRACE_TAG_RUN_NAME, TraceLabeller


def _traces(url: str, exp_id: str, n: int) -> list[str]:
    """``n`` one-span traces in the experiment, through MLflow's OTLP endpoint (as forwarded)."""
    req = ExportTraceServiceRequest()
    scope = req.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    for i in range(n):
        span = scope.spans.add(name=f"sample {i}", trace_id=bytes([i + 1]) * 16,
                               span_id=bytes([i + 1]) * 8, start_time_unix_nano=now,
                               end_time_unix_nano=now + 1000)
        span.status.code = 1
    r = requests.post(f"{url}/v1/traces", data=req.SerializeToString(), timeout=30, headers={
        "Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": exp_id})
    r.raise_for_status()
    return [f"tr-{bytes([i + 1]).hex() * 16}" for i in range(n)]


def test_labels_go_where_missing_and_a_vanished_trace_is_skipped(mlflow_server, mlflow_client,
                                                                 caplog):
    exp_id = mlflow_client.create_experiment("trace-labels")
    run = mlflow_client.create_run(exp_id, run_name="baseline · m · t · #abc123",
                                   tags={"inspect.tag.baseline": "true", "inspect.tags": "baseline"})
    run = mlflow_client.get_run(run.info.run_id)
    labelled, bare = _traces(mlflow_server.url, exp_id, 2)
    mlflow_client.set_trace_tag(labelled, "inspect.tag.baseline", "true")
    gone = "tr-" + "0" * 32  # never existed (or deleted since the task's traces were read)
    with ThreadPoolExecutor(4) as pool:
        labeller = TraceLabeller(lambda: mlflow_client, pool)
        n = labeller.label(run, [(labelled, {"inspect.tag.baseline": "true"}), (bare, {}),
                                 (gone, {})])
    assert n == 3  # labelled: its run name; bare: both; gone: nothing (logged)
    assert f"trace {gone} left without" in caplog.text
    infos = {t.info.trace_id: t.info for t in mlflow_client.search_traces(
        locations=[exp_id], include_spans=False)}
    for trace_id in (labelled, bare):
        tags = infos[trace_id].tags
        assert tags["inspect.tag.baseline"] == "true"
        assert tags[TRACE_TAG_RUN_NAME] == "baseline · m · t · #abc123"
        assert "inspect.tags" not in tags  # one tag per label is what filters; no copy of all
