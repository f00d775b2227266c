"""Several receivers, one MLflow: whichever receiver gets which trace, in whatever order and how
often, MLflow ends up exactly as one receiver leaves it.

The receivers run as real processes with their own spools behind a router that splits OTLP
requests by trace id as the Collector's ``loadbalancing`` exporter does (``routing_key:
traceID``), or at random (spans of one trace on different receivers). MLflow is the session's
PostgreSQL-backed server with several workers.
"""

from __future__ import annotations

import random
import threading

import pytest

from inspect_otel import semconv as sc
from inspect_otel.receiver import _mlflow_names, _run_tags
from inspect_otel.receiver._claims import (
    TAG_CLAIM,
    TAG_CLAIMED_RUN,
    Claims,
    claim_experiment_name,
    claim_key,
)
from tests.receiver.mlflow_view import (
    check_eval,
    complete,
    diff,
    normalized,
    run_page_note,
    snapshot,
)
from tests.receiver.synth import SynthEval
from tests.support.router import split
from tests.support.wait import wait_for

SETTLE = "30"  # no partial finalization while a test's receivers are still delivering


@pytest.fixture(scope="module")
def server(pg_mlflow_server):
    """MLflow on PostgreSQL with several workers: concurrent writers, as at scale."""
    return pg_mlflow_server


@pytest.fixture(scope="module")
def client(server):
    from mlflow import MlflowClient

    return MlflowClient(server.url)


def _eval(run_id: str) -> SynthEval:
    return SynthEval(run_id=run_id, tasks=("task_a", "task_b"), samples=4, epochs=2,
                     scorers=("match", "judge"), model_graded=("judge",)).build()


def _deliver(receivers, batches, rnd: random.Random | None = None) -> None:
    for sig, body in batches:
        for i, part in split(sig, body, len(receivers), rnd).items():
            r = receivers[i].post(sig, part)
            assert r.status_code == 200, (r.status_code, r.text)


def _settled(client, experiment: str, ev: SynthEval, receivers) -> dict:
    for rp in receivers:
        rp.wait_idle(180)
    return wait_for(lambda: complete(s := snapshot(client, experiment, ev.run_id), ev) and s,
                    120, what=f"{experiment} complete in MLflow", interval=1.0)


def _active_runs(client, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


@pytest.fixture(scope="module")
def baseline(server, client, tmp_path_factory):
    """What one receiver leaves in MLflow for the eval every test here sends."""
    from tests.support.receiver import start_receiver

    ev = _eval("scale-one")
    rp = start_receiver(server.url, tmp_path_factory.mktemp("one"), "scale-one",
                        "--settle-seconds", SETTLE)
    try:
        _deliver([rp], ev.batches(size=25))
        snap = _settled(client, "scale-one", ev, [rp])
    finally:
        rp.kill()
    check_eval(snap, ev)
    return normalized(snap, ev)


def _same_as_baseline(client, experiment: str, ev: SynthEval, receivers, baseline) -> None:
    snap = normalized(_settled(client, experiment, ev, receivers), ev)
    assert not diff(baseline, snap), diff(baseline, snap)
    # no leftover candidate runs: one run per task, nothing else
    runs = _active_runs(client, experiment)
    assert len(runs) == len(ev.tasks)
    # whichever receiver wrote what, each task run's page opens with the task's results (its
    # description: the metrics table's order is PostgreSQL's row order, see docs/receiver.md)
    for run in runs:
        if run.data.tags.get(_mlflow_names.TAG_ROLE) != _mlflow_names.ROLE_TASK:
            continue
        note = run_page_note(client, run.info.run_id).splitlines()
        assert note[0] == f"**Inspect results** · {ev.samples * ev.epochs} samples", note
        assert [row.split(" | ")[0] for row in note[4:]] == [f"| `{s}`" for s in ev.scorers]
    for rp in receivers:
        assert "View run" not in rp.log()


def test_three_receivers_routed_by_trace_id(server, client, receiver_factory, tmp_path,
                                           baseline):
    """The loadbalancing exporter's routing: the run trace (run and task spans) on one
    receiver, the sample traces spread over all three, results with their traces."""
    ev = _eval("scale-traceid")
    receivers = [receiver_factory(server.url, "scale-traceid", tmp_path / f"r{i}", "--settle-seconds",
                                  SETTLE) for i in range(3)]
    _deliver(receivers, ev.batches(size=25, shuffle_seed=1))
    _same_as_baseline(client, "scale-traceid", ev, receivers, baseline)


def test_random_assignment_duplicates_and_a_receiver_killed(server, client, receiver_factory,
                                                           tmp_path, baseline):
    """Every span and log record to a random receiver (spans of one trace split), everything
    sent twice under another split, and one receiver killed with data in its spool: restarted
    later on the same spool, it still applies what it acknowledged."""
    ev = _eval("scale-random")
    receivers = [receiver_factory(server.url, "scale-random", tmp_path / f"r{i}", "--settle-seconds",
                                  SETTLE) for i in range(3)]
    batches = ev.batches(size=20, shuffle_seed=2)
    _deliver(receivers, batches[: len(batches) // 2], random.Random(3))
    receivers[2].kill()  # SIGKILL, possibly mid-write to MLflow
    _deliver(receivers[:2], batches[len(batches) // 2:], random.Random(4))
    _deliver(receivers[:2], batches, random.Random(5))  # the whole eval again
    receivers[2] = receiver_factory(server.url, "scale-random", tmp_path / "r2", "--settle-seconds",
                                    SETTLE)
    _same_as_baseline(client, "scale-random", ev, receivers, baseline)


def test_two_receivers_given_the_same_data(server, client, receiver_factory, tmp_path, baseline):
    ev = _eval("scale-twice")
    receivers = [receiver_factory(server.url, "scale-twice", tmp_path / f"r{i}", "--settle-seconds",
                                  SETTLE) for i in range(2)]
    threads = [threading.Thread(target=_deliver, args=([rp], ev.batches(size=30, shuffle_seed=i)))
               for i, rp in enumerate(receivers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _same_as_baseline(client, "scale-twice", ev, receivers, baseline)


def test_concurrent_claims_agree_on_one_run(server, client):
    """Racing claimers (own clients, concurrent requests) all get the same run; the losers'
    candidates are deleted and the claim experiment is hidden but still holds the claim."""
    from mlflow import MlflowClient

    exp_id = client.create_experiment("scale-claims")
    n = 8
    barrier = threading.Barrier(n)
    tasks: list[str] = [""] * n
    errors: list[BaseException] = []

    def claim(i: int) -> None:
        try:
            claims = Claims(MlflowClient(server.url), exp_id)
            tags = _run_tags.task_run_tags("claim-eval", {sc.INSPECT_TASK_NAME: "t"})
            barrier.wait()
            tasks[i] = claims.task_run("claim-eval", tags, None, run_name="t")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(tasks)) == 1
    runs = {r.info.run_id: r for r in client.search_runs([exp_id], max_results=100)}
    assert set(runs) == {tasks[0]}, "candidates of the losers are deleted"
    assert runs[tasks[0]].data.tags[_mlflow_names.TAG_ROLE] == _mlflow_names.ROLE_TASK
    assert _mlflow_names.TAG_PARENT_RUN_ID not in runs[tasks[0]].data.tags
    claim_exp = client.get_experiment_by_name(claim_experiment_name(exp_id, "claim-eval"))
    assert claim_exp.lifecycle_stage == "deleted"
    assert claim_exp.tags[TAG_CLAIMED_RUN] == tasks[0]


def test_a_task_run_of_an_older_receiver_is_adopted(server, client):
    """A task run made by a receiver that nested it under a parent run (tags, no claim
    experiment) is the one the claim registers: no second run for the same task."""
    from mlflow import MlflowClient

    exp_id = client.create_experiment("scale-claims-legacy")
    parent = client.create_run(exp_id, tags={_mlflow_names.TAG_ROLE: _mlflow_names.ROLE_RUN,
                                             sc.INSPECT_RUN_ID: "old-run"}).info.run_id
    old = client.create_run(exp_id, tags={
        _mlflow_names.TAG_ROLE: _mlflow_names.ROLE_TASK, sc.INSPECT_EVAL_ID: "old-eval",
        _mlflow_names.TAG_PARENT_RUN_ID: parent}).info.run_id
    claims = Claims(MlflowClient(server.url), exp_id)
    tags = _run_tags.task_run_tags("old-eval", {sc.INSPECT_TASK_NAME: "t"})
    assert claims.task_run("old-eval", tags, None, run_name="t") == old
    claims.drain()
    assert {r.info.run_id for r in client.search_runs([exp_id])} == {parent, old}
    assert client.get_experiment_by_name(
        claim_experiment_name(exp_id, "old-eval")).tags[TAG_CLAIMED_RUN] == old


def test_a_claimer_that_died_leaves_nothing_stuck(server, client):
    """A claimer killed after creating its candidate (no claim yet), and one killed after
    claiming but before hiding the claim experiment: the next claimer cleans both up."""
    from mlflow import MlflowClient

    exp_id = client.create_experiment("scale-claims-dead")
    claims = Claims(MlflowClient(server.url), exp_id)

    def tags(eval_id: str) -> dict[str, str]:
        return _run_tags.task_run_tags(eval_id, {})

    # died before claiming: a candidate nobody registered
    orphan = client.create_run(exp_id, tags={TAG_CLAIM: claim_key("dead-1")}).info.run_id
    run1 = claims.task_run("dead-1", tags("dead-1"), None, run_name="x")
    claims.drain()
    assert run1 != orphan and client.get_run(orphan).info.lifecycle_stage == "deleted"
    # died after claiming, before hiding the claim: the claim stands and is hidden by a reader
    won = client.create_run(exp_id, tags={TAG_CLAIM: claim_key("dead-2")}).info.run_id
    client.create_experiment(claim_experiment_name(exp_id, "dead-2"), tags={TAG_CLAIMED_RUN: won})
    assert claims.task_run("dead-2", tags("dead-2"), None, run_name="x") == won
    claims.drain()
    assert client.get_experiment_by_name(
        claim_experiment_name(exp_id, "dead-2")).lifecycle_stage == "deleted"
    assert {r.info.run_id for r in client.search_runs([exp_id])} == {run1, won}