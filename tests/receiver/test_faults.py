"""Faults: MLflow down mid-stream, receiver killed with a non-empty spool, full spool; on
PostgreSQL: the database stopped or crashed under a running MLflow, MLflow restarted on it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from tests.support.receiver import wait_for
from tests.receiver.mlflow_view import check_eval, complete, snapshot
from tests.receiver.synth import SynthEval
from tests.receiver.proxy import TcpProxy
from tests.support.mlflow_server import free_port


def _outage(rp, ev, client, experiment, cut, restore) -> None:
    """Half the data lands, MLflow goes away, the rest is still acknowledged (it is durable in
    the spool), MLflow comes back, and everything lands exactly once."""
    batches = ev.batches(size=9, shuffle_seed=11)
    half = len(batches) // 2
    for sig, body in batches[:half]:
        assert rp.post(sig, body).status_code == 200
    rp.wait_idle()
    cut()
    try:
        for sig, body in batches[half:]:
            assert rp.post(sig, body).status_code == 200
        h = wait_for(lambda: (h := rp.health())["mlflow"]["reachable"] is False
                     and h["mlflow"]["writer_ok"] is False and h, 60,
                     what="health shows MLflow unreachable")
        assert h["status"] == "degraded" and not h["idle"]
        assert h["spool"]["pending_spans"] > 0
    finally:
        restore()
    rp.wait_idle(240)
    snap = snapshot(client, experiment, ev.run_id)
    assert complete(snap, ev)
    # aggregates may have been written early (task settled while MLflow was away) and again
    # when complete: the latest values are the complete ones, the per-sample steps are exact
    check_eval(snap, ev, exact_history=False)


def test_mlflow_unreachable_mid_stream_then_back(mlflow_server, mlflow_client, receiver_factory):
    """MLflow cut off at the TCP level (connection refused, open connections reset)."""
    proxy = TcpProxy(mlflow_server.port).start()
    ev = SynthEval(run_id="fault-cut", samples=4, epochs=1, scorers=("match",)).build()
    rp = receiver_factory(proxy.url, "faults-cut")
    port = proxy.port
    try:
        _outage(rp, ev, mlflow_client, "faults-cut", proxy.stop,
                lambda: TcpProxy(mlflow_server.port, port=port).start())
    finally:
        proxy.stop()


def test_mlflow_stopped_mid_stream_then_restarted(mlflow_server, mlflow_client, receiver_factory):
    """The real MLflow server process stopped and started again on the same port and store."""
    ev = SynthEval(run_id="fault-down", samples=3, epochs=1, scorers=("match",)).build()
    rp = receiver_factory(mlflow_server.url, "faults")
    _outage(rp, ev, mlflow_client, "faults", mlflow_server.stop, mlflow_server.start)


def test_receiver_restart_with_non_empty_spool(mlflow_server, mlflow_client, receiver_factory,
                                              tmp_path):
    """Acknowledged data survives kill -9: a new receiver on the same data dir applies it."""
    ev = SynthEval(run_id="fault-restart", samples=3, scorers=("match", "judge"),
                   model_graded=("judge",)).build()
    data_dir = tmp_path / "spool"
    dead_mlflow = f"http://127.0.0.1:{free_port()}"  # nothing listens: data stays spooled
    rp = receiver_factory(dead_mlflow, "restart", data_dir)
    for sig, body in ev.batches(size=10, shuffle_seed=5):
        assert rp.post(sig, body).status_code == 200
    h = rp.health()
    assert h["spool"]["pending_spans"] == len(ev.spans())
    rp.kill()  # SIGKILL: no graceful shutdown
    # A start that fails (its port is taken) says so in one line at once and writes nothing,
    # although MLflow is up and the spool holds data: that waits for a receiver that runs.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        failed = subprocess.run(
            [sys.executable, "-m", "inspect_otel.cli", "receiver", "--mlflow-uri",
             mlflow_server.url, "--port", str(busy.getsockname()[1]), "--grpc-port",
             str(free_port()), "--data-dir", str(data_dir)],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "MLFLOW_EXPERIMENT_NAME": "restart"})
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    assert [line for line in failed.stderr.splitlines() if "inspect-otel receiver:" in line] == \
        [line for line in failed.stderr.splitlines() if line.strip()][-1:], failed.stderr
    exp = mlflow_client.get_experiment_by_name("restart")
    assert exp is None or not mlflow_client.search_runs([exp.experiment_id])
    rp2 = receiver_factory(mlflow_server.url, "restart", data_dir)
    rp2.wait_idle(180)
    check_eval(snapshot(mlflow_client, "restart", ev.run_id), ev)


def test_sigterm_applies_what_was_accepted(mlflow_server, mlflow_client, receiver_factory):
    """Stopped right after acknowledging an eval, the receiver applies it before it exits (up to
    its drain time): nothing waits for the next start."""
    ev = SynthEval(run_id="fault-sigterm", samples=4, scorers=("match", "judge")).build()
    rp = receiver_factory(mlflow_server.url, "sigterm")
    for sig, body in ev.batches(size=10, shuffle_seed=3):
        assert rp.post(sig, body).status_code == 200
    assert rp.health()["spool"]["pending_spans"] > 0  # the writer has not caught up yet
    rp.kill(signal.SIGTERM)
    assert rp.proc.returncode == 0, rp.log()
    snap = snapshot(mlflow_client, "sigterm", ev.run_id)
    traces = [tr for t in snap["tasks"].values() for tr in t["traces"].values()]
    assert len(traces) == ev.samples * ev.epochs * len(ev.tasks)
    assert all(len(tr["assessments"]) == len(ev.scorers) for tr in traces)


def test_full_spool_answers_503_with_retry_after(receiver_factory, tmp_path):
    ev = SynthEval(run_id="fault-full", samples=3).build()
    dead_mlflow = f"http://127.0.0.1:{free_port()}"
    rp = receiver_factory(dead_mlflow, "full", tmp_path / "full", "--max-spool-mb", "0.002")
    statuses = []
    for sig, body in ev.batches(size=5):
        r = rp.post(sig, body)
        statuses.append(r.status_code)
        if r.status_code == 503:
            assert int(r.headers["Retry-After"]) > 0
            assert "spool full" in r.text
            break
    assert statuses[0] == 200 and statuses[-1] == 503
    assert rp.health()["spool"]["full"] is True


# --------------------------------------------------------------------------- PostgreSQL


def test_postgres_and_mlflow_outages_mid_stream(pg_mlflow_server, receiver_factory):
    """One eval streamed through three outages of MLflow on PostgreSQL (one receiver, one eval:
    each phase costs less than a test of its own):
    1. PostgreSQL shut down (clients disconnected) while the receiver is idle. MLflow's /health
       does not touch the database, so MLflow stays "reachable" while every write fails (503).
    2. PostgreSQL killed (SIGKILL) right after fresh data arrived; it recovers from its WAL.
    3. MLflow itself (several workers) stopped and started again on the same port.
    Each time the receiver must take the failures as "try again later", keep the data spooled,
    and apply all of it once the part is back: nothing dropped, nothing doubled."""
    from mlflow import MlflowClient

    pg = pg_mlflow_server.postgres
    experiment = "faults-pg"
    ev = SynthEval(run_id="fault-pg", samples=3, epochs=2, scorers=("match", "judge"),
                   model_graded=("judge",)).build()
    rp = receiver_factory(pg_mlflow_server.url, experiment)
    batches = ev.batches(size=5, shuffle_seed=13)
    quarter = len(batches) // 4
    parts = [batches[:quarter], batches[quarter: 2 * quarter], batches[2 * quarter: 3 * quarter],
             batches[3 * quarter:]]

    def post(part) -> None:
        for sig, body in part:
            assert rp.post(sig, body).status_code == 200

    def outage(cut, restore, part, seen) -> None:
        cut()
        try:
            post(part)
            h = wait_for(lambda: (h := rp.health()) and seen(h) and h, 90,
                         what="the receiver to see the outage")
            assert h["spool"]["pending_spans"] > 0 and not h["idle"]
            assert h["dead_letters"]["count"] == 0, h["dead_letters"]
        finally:
            restore()
        h = rp.wait_idle(240)
        assert h["dead_letters"]["count"] == 0, h["dead_letters"]

    def writes_fail(h) -> bool:
        return h["mlflow"]["writer_ok"] is False

    def mlflow_gone(h) -> bool:
        return h["mlflow"]["reachable"] is False and h["mlflow"]["writer_ok"] is False

    post(parts[0])
    rp.wait_idle()
    outage(pg.stop, pg.start, parts[1], writes_fail)

    def crash_after_fresh_data() -> None:
        post(parts[2][: len(parts[2]) // 2])  # the writer wakes and starts applying this
        pg.kill()

    outage(crash_after_fresh_data, pg.start, parts[2][len(parts[2]) // 2:], writes_fail)
    outage(pg_mlflow_server.stop, pg_mlflow_server.start, parts[3], mlflow_gone)
    snap = snapshot(MlflowClient(pg_mlflow_server.url), experiment, ev.run_id)
    assert complete(snap, ev)
    check_eval(snap, ev, exact_history=False)


def test_postgres_down_mid_stream_with_two_receivers(postgres_server, receiver_factory, tmp_path):
    """MLflow's PostgreSQL goes away while two receivers (trace-id split) are mid-stream: they
    keep acknowledging into their spools, retry, and once PostgreSQL is back everything lands
    exactly once (one run per Inspect run and task, exact metric histories).

    Its own MLflow (one worker), whose database engine exists before the fault: an MLflow worker
    that first touches its database while PostgreSQL is down retries inside that request, with a
    back-off that grows to minutes (``mlflow.store.db.utils.create_sqlalchemy_engine_with_retry``).
    That is MLflow starting without its database, not the mid-stream fault tested here; with the
    session's two-worker server it made this test time out whenever one worker was still cold."""
    from mlflow import MlflowClient

    from tests.support.postgres import start_pg_mlflow
    from tests.support.router import split

    pg_mlflow_server = start_pg_mlflow(tmp_path / "mlflow", postgres_server,
                                       database="faults_pg_two", workers=1)
    try:
        client = MlflowClient(pg_mlflow_server.url)
        client.search_experiments(max_results=1)  # the worker's database engine exists from here
        ev = SynthEval(run_id="fault-pg-two", tasks=("task_a", "task_b"), samples=2, epochs=2,
                       scorers=("match", "judge"), model_graded=("judge",)).build()
        receivers = [receiver_factory(pg_mlflow_server.url, "faults-pg-two", tmp_path / f"r{i}",
                                      "--settle-seconds", "30") for i in range(2)]
        batches = ev.batches(size=9, shuffle_seed=13)
        half = len(batches) // 2

        def deliver(part):
            for sig, body in part:
                for i, piece in split(sig, body, 2).items():
                    assert receivers[i].post(sig, piece).status_code == 200

        deliver(batches[:half])
        postgres = pg_mlflow_server.postgres
        postgres.stop()
        try:
            deliver(batches[half:])
            wait_for(lambda: any(rp.health()["mlflow"]["writer_ok"] is False for rp in receivers)
                     and all(not rp.health()["idle"] for rp in receivers), 60,
                     what="receivers failing to write while PostgreSQL is down")
        finally:
            postgres.start()
        for rp in receivers:
            rp.wait_idle(240)
        snap = wait_for(lambda: complete(s := snapshot(client, "faults-pg-two", ev.run_id), ev) and s,
                        120, what="everything in MLflow", interval=1.0)
        check_eval(snap, ev, exact_history=True)
        exp = client.get_experiment_by_name("faults-pg-two")
        assert len(client.search_runs([exp.experiment_id])) == len(ev.tasks)  # one per task
    finally:
        pg_mlflow_server.stop()
