"""The eval log as an artifact of its task run: stored when the receiver can read the task's
log location, recorded in a tag when it cannot, off with --no-log-artifacts."""

from __future__ import annotations

from inspect_otel.receiver import _mlflow_names
from tests.receiver.mlflow_view import runs
from tests.receiver.synth import SynthEval


def _task_runs(client, experiment: str, run_id: str) -> dict:
    exp = client.get_experiment_by_name(experiment)
    return {r.data.tags["inspect.task.name"]: r for r in runs(client, exp.experiment_id, run_id,
                                                               _mlflow_names.ROLE_TASK)}


def test_readable_log_stored_unreadable_tagged(mlflow_server, mlflow_client, receiver_factory,
                                               tmp_path):
    log = tmp_path / "logs" / "2026-01-01T00-00-00_task-a_abc.eval"
    log.parent.mkdir()
    log.write_bytes(b"PK\x03\x04 an eval log " * 100)
    missing = "/nonexistent/elsewhere/2026-01-01T00-00-00_task-b_def.eval"
    ev = SynthEval(run_id="logs-run", tasks=("task_a", "task_b"), samples=1,
                   log_locations={"task_a": log.as_uri(), "task_b": missing}).build()
    rp = receiver_factory(mlflow_server.url, "log-artifacts", tmp_path / "r")
    for sig, body in ev.batches(size=100):
        assert rp.post(sig, body).status_code == 200
    rp.wait_idle(120)
    tasks = _task_runs(mlflow_client, "log-artifacts", ev.run_id)

    a = tasks["task_a"]
    stored = [f.path for f in mlflow_client.list_artifacts(a.info.run_id, _mlflow_names.LOG_ARTIFACT_DIR)]
    assert stored == [f"{_mlflow_names.LOG_ARTIFACT_DIR}/{log.name}"]
    local = mlflow_client.download_artifacts(a.info.run_id, stored[0], str(tmp_path / "dl"))
    assert open(local, "rb").read() == log.read_bytes()
    assert a.data.tags[_mlflow_names.TAG_LOG_ARTIFACT] == stored[0]
    assert _mlflow_names.TAG_LOG_ARTIFACT_ERROR not in a.data.tags

    b = tasks["task_b"]
    assert mlflow_client.list_artifacts(b.info.run_id, _mlflow_names.LOG_ARTIFACT_DIR) == []
    assert b.data.tags[_mlflow_names.TAG_LOG_ARTIFACT_ERROR].startswith(missing)
    assert "FileNotFoundError" in b.data.tags[_mlflow_names.TAG_LOG_ARTIFACT_ERROR]
    assert b.info.status == "FINISHED"  # an unreadable log is never an error
    assert rp.health()["writer"]["dropped"] == 0


def test_no_log_artifacts(mlflow_server, mlflow_client, receiver_factory, tmp_path):
    log = tmp_path / "x.eval"
    log.write_bytes(b"log")
    ev = SynthEval(run_id="logs-off", samples=1, log_locations={"task_a": str(log)}).build()
    rp = receiver_factory(mlflow_server.url, "log-artifacts-off", tmp_path / "r",
                          "--no-log-artifacts")
    for sig, body in ev.batches(size=100):
        assert rp.post(sig, body).status_code == 200
    rp.wait_idle(120)
    run = _task_runs(mlflow_client, "log-artifacts-off", ev.run_id)["task_a"]
    assert mlflow_client.list_artifacts(run.info.run_id, _mlflow_names.LOG_ARTIFACT_DIR) == []
    assert _mlflow_names.TAG_LOG_ARTIFACT not in run.data.tags
    assert _mlflow_names.TAG_LOG_ARTIFACT_ERROR not in run.data.tags
