"""Live export through a real receiver into a real MLflow: a running sample's trace is in MLflow
``IN_PROGRESS``, linked to its task run, with its spans so far; when its root arrives it is
``OK`` (``ERROR`` for a crash) with every span the hook sent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from inspect_ai.log import read_eval_log

from inspect_otel import ids
from inspect_otel.content import ContentPolicy
from inspect_otel.mapping import map_sample, task_context
from inspect_otel.mapping._common import to_ns
from inspect_otel.receiver import _mlflow_names
from tests.receiver.mlflow_view import runs

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "live-e2e"
STEP_S = 1.5


def _start_eval(receiver_url: str, log_dir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "INSPECT_OTEL_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver_url, OTEL_METRICS_EXPORTER="none")
    code = ("import sys; from pathlib import Path; from tests.support.evals import run_slow; "
            f"run_slow(Path(sys.argv[1]), seconds={STEP_S}, samples=('ok', 'retry', 'crash'))")
    return subprocess.Popen([sys.executable, "-c", code, str(log_dir)], cwd=str(ROOT), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_running_sample_is_in_progress_in_mlflow_then_ok(mlflow_server, mlflow_client,
                                                            receiver_factory, tmp_path):
    rp = receiver_factory(mlflow_server.url, EXPERIMENT)
    proc = _start_eval(rp.url, tmp_path / "logs")
    seen: dict[str, tuple[int, str, int]] = {}  # trace id -> (seen at, task run, spans so far)
    try:
        exp_id = None
        while proc.poll() is None:
            exp = mlflow_client.get_experiment_by_name(EXPERIMENT)
            exp_id = exp.experiment_id if exp else None
            # every run of the experiment (its task run's tags are complete only at the end)
            tasks = mlflow_client.search_runs([exp_id]) if exp_id else []
            for task in tasks:
                for t in mlflow_client.search_traces(locations=[exp_id],
                                                     run_id=task.info.run_id):
                    if t.info.state.value == "IN_PROGRESS" and t.info.trace_id not in seen:
                        spans = mlflow_client.get_trace(t.info.trace_id).data.spans
                        seen[t.info.trace_id] = (time.time_ns(), task.info.run_id, len(spans))
            time.sleep(0.2)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    rp.wait_idle(120)

    log = read_eval_log(str(next((tmp_path / "logs").glob("*.eval"))))
    ctx = task_context(log.eval)
    task_run = runs(mlflow_client, exp_id, log.eval.run_id, _mlflow_names.ROLE_TASK)[0]
    linked = {t.info.trace_id: t for t in mlflow_client.search_traces(
        locations=[exp_id], run_id=task_run.info.run_id)}
    for sample in log.samples:
        trace_id = "tr-" + ids.trace_id_hex(ids.sample_trace_id(sample.uuid))
        # while the sample ran: IN_PROGRESS, linked to its task run, some spans already there
        # (the crashing sample runs too briefly for a poll of this loaded machine to be sure)
        if sample.id != "crash":
            assert trace_id in seen, f"sample {sample.id} was never seen running"
        if trace_id in seen:
            seen_at, run_id, spans_so_far = seen[trace_id]
            assert seen_at < to_ns(sample.completed_at)
            assert run_id == task_run.info.run_id and spans_so_far >= 1
        # after: the root's state, still linked, with every span the hook sent
        assert linked[trace_id].info.state.value == ("ERROR" if sample.error else "OK")
        stored = {s.span_id: s for s in mlflow_client.get_trace(trace_id).data.spans}
        expected = {ids.span_id_hex(s.span_id) for s in map_sample(sample, ctx, ContentPolicy()).spans}
        assert expected <= set(stored)
        extra = [stored[k] for k in set(stored) - expected]  # a retried sample's failed attempt
        assert bool(extra) == bool(sample.error_retries)
        if extra:
            top = [s for s in extra if s.attributes.get("inspect.sample.attempt") == 1]
            assert [s.name for s in top] == ["solvers"] and top[0].status.status_code == "ERROR"
    assert {seen[t][1] for t in seen} == {task_run.info.run_id}
