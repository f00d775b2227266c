"""Faults: MLflow down mid-stream, receiver killed with a non-empty spool, full spool; on
PostgreSQL: the database stopped or crashed under a running MLflow, MLflow restarted on it."""

from __future__ import annotations

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
    rp2 = receiver_factory(mlflow_server.url, "restart", data_dir)
    rp2.wait_idle(180)
    check_eval(snapshot(mlflow_client, "restart", ev.run_id), ev)


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


def test_postgres_stopped_then_crashed_mid_stream(pg_mlflow_server, receiver_factory):
    """PostgreSQL goes away twice under a running MLflow: a clean shutdown while the receiver is
    idle, then a crash (SIGKILL) right after fresh data arrived. MLflow's /health does not
    touch the database, so it keeps answering while every write fails (503): the receiver must
    take that as "try again later", keep the data spooled, and apply all of it once the
    database is back (recovered from its WAL after the crash): nothing dropped, nothing
    doubled."""
    from mlflow import MlflowClient

    pg = pg_mlflow_server.postgres
    experiment = "faults-pg"
    ev = SynthEval(run_id="fault-pg", samples=3, epochs=2, scorers=("match", "judge"),
                   model_graded=("judge",)).build()
    rp = receiver_factory(pg_mlflow_server.url, experiment)
    batches = ev.batches(size=7, shuffle_seed=13)
    third = len(batches) // 3

    def post(part) -> None:
        for sig, body in part:
            assert rp.post(sig, body).status_code == 200

    def outage_seen() -> None:
        h = wait_for(lambda: (h := rp.health())["mlflow"]["writer_ok"] is False and h, 90,
                     what="the writer to see the database outage")
        assert h["spool"]["pending_spans"] > 0 and not h["idle"]
        assert h["writer"]["dropped"] == 0, h["mlflow"]["last_error"]

    post(batches[:third])
    rp.wait_idle()
    pg.stop()
    try:
        post(batches[third: 2 * third])
        outage_seen()
    finally:
        pg.start()
    rp.wait_idle(240)
    crash_part = batches[2 * third:]
    post(crash_part[: len(crash_part) // 2])  # the writer wakes and starts applying this
    pg.kill()
    try:
        post(crash_part[len(crash_part) // 2:])
        outage_seen()
    finally:
        pg.start()
    h = rp.wait_idle(240)
    assert h["writer"]["dropped"] == 0, h["mlflow"]["last_error"]
    snap = snapshot(MlflowClient(pg_mlflow_server.url), experiment, ev.run_id)
    assert complete(snap, ev)
    check_eval(snap, ev, exact_history=False)


def test_mlflow_on_postgres_restarted_mid_stream(pg_mlflow_server, receiver_factory):
    """MLflow (several workers on PostgreSQL) stopped and started again on the same port."""
    from mlflow import MlflowClient

    ev = SynthEval(run_id="fault-pg-mlflow", samples=3, epochs=1, scorers=("match",)).build()
    rp = receiver_factory(pg_mlflow_server.url, "faults-pg-mlflow")
    _outage(rp, ev, MlflowClient(pg_mlflow_server.url), "faults-pg-mlflow",
            pg_mlflow_server.stop, pg_mlflow_server.start)
