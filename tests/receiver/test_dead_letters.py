"""Dead letters: what the receiver cannot apply stays in the spool with its cause, is retried,
never silently dropped, never holds up the rest, and is applied exactly once when re-driven.

The writer's faults are injected in two ways:
- in process (a ``Receiver`` with the writer's real MLflow client against the real MLflow server),
  by wrapping one MLflow client method or function so that it raises: a ``TypeError`` from a
  changed MLflow signature or a ``KeyError`` of ours cannot come over HTTP, so this is the one
  accepted mock here;
- over real HTTP, by ``HttpFaultProxy`` (tests/receiver/proxy.py) in front of MLflow, with a
  real receiver process and the ``--retry-dead-letters`` command.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import subprocess
import sys
import threading

import pytest
import requests
from google.protobuf.message import DecodeError

from inspect_otel.receiver import Receiver, ReceiverConfig
from inspect_otel.receiver import _mlflow_io as io
from inspect_otel.receiver._dead_letters import Item, RetryPolicy, result_key
from inspect_otel.receiver._server import VERSION_META
from inspect_otel.receiver._spool import Spool, eval_key
from tests.receiver.mlflow_view import check_eval, complete, snapshot
from tests.receiver.proxy import HttpFaultProxy
from tests.receiver.synth import SynthEval, trace_request
from tests.support.mlflow_server import free_port
from tests.support.wait import wait_for

FAST = RetryPolicy(attempts=3, first_delay_s=0.2, max_delay_s=0.5)
SECRET = "sk-test-0123456789abcdefghij"
# what a cause must never show: a key, a URL with its host, a host:port, a path of the machine
LEAKS = (SECRET, "internal.example", "10.1.2.3", "/srv/secret")


# --- classification ---------------------------------------------------------------------------
def _raised_while(handling: BaseException, exc: BaseException) -> BaseException:
    try:
        try:
            raise handling
        except Exception:
            raise exc  # noqa: B904 - MLflow's client wraps network errors so
    except Exception as e:  # noqa: BLE001
        return e


def test_only_mlflow_definite_refusals_are_permanent():
    from mlflow.exceptions import MlflowException, RestException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

    def rest(code: str) -> RestException:
        return RestException({"error_code": code, "message": "x"})

    cases = {
        # MLflow refused the request itself: permanent
        rest("INVALID_PARAMETER_VALUE"): io.PERMANENT, rest("BAD_REQUEST"): io.PERMANENT,
        rest("RESOURCE_DOES_NOT_EXIST"): io.PERMANENT, rest("NOT_IMPLEMENTED"): io.PERMANENT,
        MlflowException("client-side check", INVALID_PARAMETER_VALUE): io.PERMANENT,
        MlflowException("gone", RESOURCE_DOES_NOT_EXIST): io.PERMANENT,
        io.http_failure(400, "bad span"): io.PERMANENT,
        DecodeError("stored bytes"): io.PERMANENT,
        # MLflow's state or the receiver's credentials: the pass is retried, nobody charged
        rest("INTERNAL_ERROR"): io.TRANSIENT, rest("TEMPORARILY_UNAVAILABLE"): io.TRANSIENT,
        rest("PERMISSION_DENIED"): io.TRANSIENT, rest("UNAUTHENTICATED"): io.TRANSIENT,
        rest("REQUEST_LIMIT_EXCEEDED"): io.TRANSIENT,
        io.http_failure(503, ""): io.TRANSIENT, io.http_failure(401, ""): io.TRANSIENT,
        io.http_failure(429, ""): io.TRANSIENT,
        requests.ConnectionError("refused"): io.TRANSIENT, TimeoutError(): io.TRANSIENT,
        _raised_while(requests.ConnectionError("refused"),
                      MlflowException("API request failed with exception")): io.TRANSIENT,
        # anything unrecognised: retried with backoff, then a dead letter
        TypeError("log_batch() got an unexpected keyword argument 'x'"): io.RETRY,
        KeyError("metrics"): io.RETRY, AttributeError("no attribute"): io.RETRY,
        ValueError("x"): io.RETRY,
        MlflowException("response body was not in a valid JSON format"): io.RETRY,
    }
    assert {type(e).__name__ + ":" + str(e): io.classify(e).kind for e in cases} == \
        {type(e).__name__ + ":" + str(e): kind for e, kind in cases.items()}


def test_a_cause_is_one_bounded_line_without_secrets_or_deployment_details():
    exc = KeyError(f"api_key={SECRET} calling http://op:pw@internal.example:5000/api\n"
                   "at 10.1.2.3:5000 and mlflow.internal.example:443 reading "
                   "/srv/secret/spool.db, host='db.internal.example' port=5432 " + "x" * 2000)
    cause = io.describe(exc)
    assert cause.startswith("KeyError: ") and "\n" not in cause
    assert len(cause) <= io.MAX_CAUSE_CHARS
    assert not [leak for leak in LEAKS + ("op:pw", "5432", "db.internal") if leak in cause], cause
    # the receiver's own tracking host is scrubbed wherever it appears
    assert "mlflow-host" not in io.scrub_text("refused by mlflow-host", ("mlflow-host",))
    # an item's key (a result's holds the sender's scorer name) is shown on one line, bounded
    name = "score\nFAKE LOG LINE " + "n" * 5000
    shown = str(Item("result", result_key("ab" * 16, "cd" * 8, name)))
    assert "\n" not in shown and "\\x0a" in shown and len(shown) < 300
    # MLflow's REST paths stay: they tell what was called
    assert "/api/2.0/mlflow/runs/log-batch" in io.scrub_text(
        "API request to endpoint /api/2.0/mlflow/runs/log-batch failed")


# --- the spool: kept, counted, bounded, re-drivable -------------------------------------------
def _spool_with_task(tmp_path, **kw) -> tuple[Spool, dict]:
    ev = SynthEval(run_id="dl-spool", samples=1).build()
    spool = Spool(tmp_path / "s.db", **kw)
    spool.ingest_traces(trace_request(ev.spans()))
    for ident in spool.drain.identities_without_run():
        spool.drain.set_mlflow_run_id(ident["key"], "mlflow-" + ident["key"])
    (task,) = spool.drain.pending_tasks()
    return spool, task


def test_dead_letters_are_kept_counted_toward_the_bound_and_redriven(tmp_path):
    spool, task = _spool_with_task(tmp_path)
    spool.drain.mark_spans_forwarded(spool.drain.pending_spans(1000, 1 << 30))
    spool.drain.mark_results_applied(spool.drain.pending_results())
    before = spool.pending_bytes
    item = Item("task", task["eval_id"], task["digest"], task["nbytes"])
    rec = spool.dead_letters.record(item, "TypeError: x", permanent=False, policy=FAST)
    assert not rec.dead and rec.retry_in_s == FAST.first_delay_s
    assert spool.drain.pending_tasks() == []  # held back until its next try
    assert spool.stats()["pending_tasks"] == 1 and spool.stats()["retrying"] == 1  # not idle
    for _ in range(FAST.attempts - 1):
        rec = spool.dead_letters.record(item, "TypeError: x", permanent=False, policy=FAST)
    assert rec.dead and rec.attempts == FAST.attempts
    stats = spool.stats()
    assert stats["dead_letters"] == 1 and stats["pending_tasks"] == 0  # kept, not pending
    # counted: the task's attributes (its span has left the spool) and the row itself
    held = spool.pending_bytes - before
    assert held == task["nbytes"] + len(task["eval_id"]) + len("TypeError: x")
    assert spool.pending_bytes == spool.db.count_pending_bytes()
    # a restart keeps it
    spool.close()
    spool = Spool(tmp_path / "s.db")
    assert spool.pending_bytes == before + held == spool.db.count_pending_bytes()
    assert spool.dead_letters.counts() == (1, 0)
    (cause,) = spool.dead_letters.causes()
    assert cause["kind"] == "task" and cause["dead"] == 1 and cause["examples"] == [task["eval_id"]]
    # re-driven: pending again, from its first attempt; applied: gone, bytes freed
    assert spool.dead_letters.redrive() == 1
    assert [t["eval_id"] for t in spool.drain.pending_tasks()] == [task["eval_id"]]
    spool.drain.mark_task_applied(task["eval_id"], task["digest"])
    assert spool.dead_letters.counts() == (0, 0)
    assert spool.pending_bytes == spool.db.count_pending_bytes() < before + held


def test_dead_letters_fill_the_spool_and_stop_ingest(tmp_path):
    """Dead letters are not deleted, so they count toward --max-spool-mb: a spool full of them
    answers 503 (SpoolFull) as a spool full of pending data does."""
    from inspect_otel.receiver._spool import SpoolFull

    spool, task = _spool_with_task(tmp_path)
    limit = spool.pending_bytes + 2000
    spool.close()
    spool = Spool(tmp_path / "s.db", max_bytes=limit)
    assert not spool.is_full()
    for i in range(40):
        spool.dead_letters.record(Item("link", f"{i:032x}"), "KeyError: " + "k" * 60,
                                  permanent=True, policy=FAST)
    assert spool.is_full()
    with pytest.raises(SpoolFull):
        spool.ingest_traces(trace_request(SynthEval(run_id="more", samples=1).build().spans()))


def test_a_new_version_of_an_item_is_tried_afresh(tmp_path):
    spool, task = _spool_with_task(tmp_path)
    item = Item("task", task["eval_id"], task["digest"], task["nbytes"])
    spool.dead_letters.record(item, "RestException: BAD_REQUEST: x", permanent=True, policy=FAST)
    assert spool.drain.pending_tasks() == []
    # the task span sent again with other content (a replay with more attributes)
    ev = SynthEval(run_id="dl-spool", samples=1).build()
    spans = ev.spans()
    task_span = next(s for s in spans if s.name == "invoke_workflow task_a")
    task_span.end_time_unix_nano += 1
    spool.ingest_traces(trace_request([task_span]))
    (again,) = spool.drain.pending_tasks()
    assert again["digest"] != task["digest"]
    rec = spool.dead_letters.record(Item("task", task["eval_id"], again["digest"]), "TypeError: y",
                                    permanent=False, policy=FAST)
    assert rec.attempts == 1  # counted from its first attempt


def test_a_refused_identity_of_an_older_spool_becomes_a_dead_letter(tmp_path):
    """Spools before the ledger marked identities.failed: migrated, and re-drivable."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("""CREATE TABLE identities(key TEXT PRIMARY KEY, role TEXT NOT NULL,
        run_id TEXT NOT NULL, eval_id TEXT, attrs TEXT NOT NULL, start_ns INTEGER NOT NULL,
        mlflow_run_id TEXT, failed TEXT)""")
    db.execute("INSERT INTO identities VALUES('run:squat', 'run', 'squat', NULL, '{}', 1, NULL, "
               "'RESOURCE_ALREADY_EXISTS: claimed')")
    db.commit()
    db.close()
    spool = Spool(path)
    assert "failed" not in {r[1] for r in spool.db.read("PRAGMA table_info(identities)")}
    assert spool.drain.identity_failed("run:squat")
    assert spool.drain.failed_identities() == [
        {"role": "run", "inspect_id": "squat", "error": "RESOURCE_ALREADY_EXISTS: claimed"}]
    assert spool.pending_bytes == spool.db.count_pending_bytes() > 0
    assert spool.dead_letters.redrive() == 1
    assert [i["key"] for i in spool.drain.identities_without_run()] == ["run:squat"]


# --- in process: faults injected into the writer's MLflow client ------------------------------
def _receiver(mlflow_server, tmp_path, experiment: str, **kw) -> Receiver:
    config = ReceiverConfig(mlflow_uri=mlflow_server.url, experiment_name=experiment,
                            port=0, grpc_port=None, data_dir=tmp_path / "data", settle_s=1.0,
                            **{"retry_policy": FAST, **kw})
    return Receiver(config)


def _send(receiver: Receiver, *evals: SynthEval) -> None:
    for ev in evals:
        for sig, body in ev.batches(size=50):
            r = requests.post(f"http://127.0.0.1:{receiver.http_port}/v1/{sig}", data=body,
                              headers={"Content-Type": "application/x-protobuf"}, timeout=30)
            assert r.status_code == 200, r.text


def _idle(receiver: Receiver, timeout: float = 180) -> dict:
    return wait_for(lambda: (h := receiver.health())["idle"] and h["mlflow"]["writer_ok"] and h,
                    timeout, what="receiver idle")


@pytest.fixture
def mlflow_env(monkeypatch):
    # as `inspect-otel receiver` sets them: the writer retries on its own schedule
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


def test_a_task_failing_unexpectedly_holds_back_only_itself(mlflow_server, mlflow_client,
                                                            tmp_path, caplog, mlflow_env):
    """log_batch raises a TypeError (as after an MLflow upgrade that changed its signature)
    for the task spans of one eval, always. The other eval lands completely meanwhile, and the
    samples of the poisoned one too; its two tasks are retried, then kept as dead letters,
    shown in /health with their cause and logged once; after an upgrade (another receiver
    version) they are re-driven and applied exactly once."""
    caplog.set_level(logging.DEBUG, logger="inspect_otel.receiver")
    poisoned = SynthEval(run_id="dl-poisoned", tasks=("task_a", "task_b"), samples=2).build()
    clean = SynthEval(run_id="dl-clean", samples=2).build()
    receiver = _receiver(mlflow_server, tmp_path, "dead-letters")
    client = receiver.writer._mlflow()
    log_batch = client.log_batch
    poisoned_runs = {eval_key(poisoned.eval_id(t)) for t in poisoned.tasks}
    faults = []

    def changed_signature(run_id, metrics=(), params=(), tags=(), **kw):
        runs = {receiver.spool.drain.mlflow_run_id(k) for k in poisoned_runs}
        if params and run_id in runs:  # the task span data (claims and finalization log tags)
            faults.append(run_id)
            raise TypeError("log_batch() got an unexpected keyword argument 'params'")
        return log_batch(run_id, metrics=metrics, params=params, tags=tags, **kw)

    client.log_batch = changed_signature
    receiver.start()
    try:
        _send(receiver, poisoned, clean)
        snap = wait_for(lambda: complete(s := snapshot(mlflow_client, "dead-letters",
                                                       clean.run_id), clean) and s, 120,
                        what="the clean eval in MLflow")
        check_eval(snap, clean)
        h = wait_for(lambda: (h := receiver.health())["dead_letters"]["count"] == 2 and h, 120,
                     what="two dead letters")
        assert h["status"] == "degraded" and h["dead_letters"]["retrying"] == 0
        (cause,) = h["dead_letters"]["causes"]
        assert cause["kind"] == "task" and cause["dead"] == 2
        assert cause["cause"] == "TypeError: log_batch() got an unexpected keyword argument 'params'"
        assert sorted(cause["examples"]) == sorted(poisoned.eval_id(t) for t in poisoned.tasks)
        assert len(faults) == 2 * FAST.attempts
        h = _idle(receiver)  # dead letters wait for a re-drive: nothing else is pending
        assert h["spool"]["dead_letters"] == 2 and h["spool"]["pending_tasks"] == 0
        # the poisoned eval's samples landed; only its task span data is held back
        snap = snapshot(mlflow_client, "dead-letters", poisoned.run_id)
        for task in poisoned.tasks:
            t = snap["tasks"][task]
            assert len(t["traces"]) == poisoned.samples and t["params"] == {}
            assert all(len(tr["assessments"]) == 1 for tr in t["traces"].values())
        # logged once per cause and state, not per retry nor per item: 6 failures, 2 lines
        loud = [r for r in caplog.records if r.levelno >= logging.WARNING
                and "unexpected keyword argument 'params'" in r.getMessage()]
        assert [r.levelname for r in loud] == ["WARNING", "ERROR"], [r.getMessage() for r in loud]
        assert "dead letter" in loud[1].getMessage()
    finally:
        receiver.stop(drain_s=0)
    # an upgrade: the next start is of another version; the fault is gone with it
    receiver = _receiver(mlflow_server, tmp_path, "dead-letters")
    receiver.spool.set_meta(VERSION_META, "0.0.0-before")
    receiver.start()
    try:
        h = _idle(receiver)
        assert h["status"] == "ok" and h["dead_letters"]["count"] == 0, h["dead_letters"]
        assert h["dead_letters"]["retrying"] == 0 and h["spool"]["pending_bytes"] == 0
    finally:
        receiver.stop(drain_s=0)
    assert any("2 dead letter(s) tried again: the receiver version changed" in r.getMessage()
               for r in caplog.records)
    snap = wait_for(lambda: complete(s := snapshot(mlflow_client, "dead-letters",
                                                   poisoned.run_id), poisoned) and s, 60,
                    what="the re-driven eval in MLflow")
    check_eval(snap, poisoned)  # exactly once: one run per task, every metric logged once
    check_eval(snapshot(mlflow_client, "dead-letters", clean.run_id), clean)


def test_random_faults_lose_nothing_and_double_nothing(mlflow_server, mlflow_client, tmp_path,
                                                       mlflow_env):
    """A seeded 40% of the writer's log_batch calls fail with a KeyError (a bug of ours),
    every other one after MLflow applied the call (written, but reported failed): claims, task
    span data and finalizations are retried until they succeed, and MLflow ends up exactly as
    without faults."""
    ev = SynthEval(run_id="dl-random", tasks=("task_a", "task_b"), samples=3,
                   scorers=("match", "judge"), model_graded=("judge",)).build()
    receiver = _receiver(mlflow_server, tmp_path, "dead-letters-random",
                         retry_policy=RetryPolicy(attempts=60, first_delay_s=0.05, max_delay_s=0.3))
    client = receiver.writer._mlflow()
    log_batch = client.log_batch
    rnd, lock, faults = random.Random(26), threading.Lock(), []

    def flaky(*args, **kw):
        with lock:  # every other fault after MLflow applied the call
            fail = rnd.random() < 0.4
            after = fail and len(faults) % 2 == 1
        if after:
            log_batch(*args, **kw)
        if fail:
            faults.append("after" if after else "before")
            raise KeyError("metrics")
        return log_batch(*args, **kw)

    client.log_batch = flaky
    receiver.start()
    try:
        _send(receiver, ev)
        h = _idle(receiver)
        assert h["dead_letters"]["count"] == 0 and h["dead_letters"]["retrying"] == 0, h
        assert h["status"] == "ok"
    finally:
        receiver.stop(drain_s=0)
    assert "before" in faults and "after" in faults  # both kinds of fault were injected
    snap = wait_for(lambda: complete(s := snapshot(mlflow_client, "dead-letters-random",
                                                   ev.run_id), ev) and s, 60, what="the eval")
    check_eval(snap, ev)  # exact: every metric once, one run per task


def test_a_poisoned_trace_holds_back_only_itself(mlflow_server, mlflow_client, tmp_path,
                                                 monkeypatch, mlflow_env):
    """MLflow's REST function raises a TypeError for every /v1/traces request that carries one
    sample's trace. The request is split trace by trace: every other trace lands, the task is
    finalized without the poisoned sample, which is kept as a dead letter with its results;
    re-driven, it lands with them, and the task is finalized again with every sample."""
    from mlflow.utils import rest_utils

    ev = SynthEval(run_id="dl-trace", samples=3).build()
    poison = next(s.trace_id for s in ev.spans() if s.name.startswith("invoke_agent"))
    http_request = rest_utils.http_request
    faults = []

    def changed(host_creds, endpoint, method, *args, **kw):
        if endpoint == "/v1/traces" and poison in (kw.get("data") or b""):
            faults.append(endpoint)
            raise TypeError("http_request() got an unexpected keyword argument 'data'")
        return http_request(host_creds, endpoint, method, *args, **kw)

    monkeypatch.setattr(rest_utils, "http_request", changed)
    receiver = _receiver(mlflow_server, tmp_path, "dead-letters-trace")
    receiver.start()
    try:
        _send(receiver, ev)
        h = wait_for(lambda: (h := _idle(receiver))["dead_letters"]["count"] >= 1 and
                     not receiver.writer.busy() and h, 120, what="the trace a dead letter")
        (cause,) = h["dead_letters"]["causes"]
        assert cause["kind"] == "trace" and cause["examples"] == [poison.hex()], cause
        assert h["spool"]["pending_spans"] == 0 and h["spool"]["pending_results"] == 0
        snap = snapshot(mlflow_client, "dead-letters-trace", ev.run_id)
        t = snap["tasks"]["task_a"]
        assert len(t["traces"]) == ev.samples - 1 and "tr-" + poison.hex() not in t["traces"]
        assert t["metrics"]["samples/received"] == ev.samples - 1  # finalized without it
        assert len(faults) >= FAST.attempts
        monkeypatch.setattr(rest_utils, "http_request", http_request)  # the fix
        assert receiver.spool.dead_letters.redrive() == 1
        h = _idle(receiver)
        assert h["status"] == "ok" and h["dead_letters"]["count"] == 0
    finally:
        receiver.stop(drain_s=0)
    snap = wait_for(lambda: complete(s := snapshot(mlflow_client, "dead-letters-trace",
                                                   ev.run_id), ev) and s, 60, what="the eval")
    # aggregates were written twice (without the sample, then with it): the latest is complete
    check_eval(snap, ev, exact_history=False)


# --- a real receiver process, a real HTTP fault, the re-drive command -------------------------
def test_a_refused_task_is_a_dead_letter_until_the_command_redrives_it(mlflow_server,
                                                                      mlflow_client,
                                                                      receiver_factory, tmp_path):
    """MLflow (through a proxy) refuses one task's span data with INVALID_PARAMETER_VALUE and
    a message full of deployment details: a dead letter at once, shown in /health (to the
    token's holder only) without them. `inspect-otel receiver --retry-dead-letters` will not
    run beside the running receiver; after the fix it applies the task exactly once."""
    token = "dead-letter-token"
    ev = SynthEval(run_id="dl-http", tasks=("poison_task", "fine_task"), samples=2).build()
    proxy = HttpFaultProxy(mlflow_server.port).start()
    message = (f"injected: Param value with api_key={SECRET} refused by "
               "http://internal.example:5000 (10.1.2.3) for /srv/secret/store")

    def refuse_poison_task(method: str, path: str, body: bytes):
        if method == "POST" and path.endswith("/runs/log-batch"):
            params = json.loads(body or b"{}").get("params") or []
            if {"key": "task", "value": "poison_task"} in params:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": message}
        return None

    proxy.fault = refuse_poison_task
    data = tmp_path / "r"
    env = {"INSPECT_OTEL_RECEIVER_TOKEN": token}
    try:
        rp = receiver_factory(proxy.url, "dead-letters-http", data, env=env)
        for sig, body in ev.batches(size=50):
            assert rp.post(sig, body, Authorization=f"Bearer {token}").status_code == 200
        h = rp.wait_idle(180)
        assert h["status"] == "degraded" and h["dead_letters"]["count"] == 1, h["dead_letters"]
        (cause,) = h["dead_letters"]["causes"]
        assert cause["kind"] == "task" and cause["examples"] == [ev.eval_id("poison_task")]
        assert cause["cause"].startswith("RestException: INVALID_PARAMETER_VALUE: injected")
        shown = json.dumps(h) + rp.log()
        assert not [leak for leak in LEAKS if leak in shown], cause["cause"]
        assert requests.get(rp.url + "/health", timeout=10).json() == {"status": "degraded"}
        assert proxy.faulted  # the refusal came over HTTP
        fine = snapshot(mlflow_client, "dead-letters-http", ev.run_id)["tasks"]["fine_task"]
        assert fine["params"]["task"] == "fine_task" and fine["status"] == "FINISHED"
        # the command refuses to touch a spool in use, in one line
        busy = subprocess.run(
            [sys.executable, "-m", "inspect_otel.cli", "receiver", "--retry-dead-letters",
             "--mlflow-uri", mlflow_server.url, "--data-dir", str(data), "--port",
             str(free_port()), "--grpc-port", str(free_port())],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "MLFLOW_EXPERIMENT_NAME": "dead-letters-http"})
        assert busy.returncode == 1
        lines = [ln for ln in busy.stderr.splitlines() if ln.strip()]
        assert lines == ["inspect-otel receiver: another receiver is running on this "
                         "--data-dir (its spool is locked): stop it first"], busy.stderr
        rp.kill(15)
        proxy.fault = None  # fixed
        rp = receiver_factory(proxy.url, "dead-letters-http", data, "--retry-dead-letters",
                              env=env)
        h = rp.wait_idle(180)
        assert h["status"] == "ok" and h["dead_letters"]["count"] == 0, h["dead_letters"]
        assert "1 dead letter(s) tried again: --retry-dead-letters" in rp.log()
    finally:
        proxy.stop()
    check_eval(snapshot(mlflow_client, "dead-letters-http", ev.run_id), ev)
