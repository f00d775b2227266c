"""The receiver attacked as issue 19 did, with real receiver processes and a real MLflow: ids that
used to stall the writer, traces of another experiment, /health without the token, the tracking
URI's credentials, requests in flight beyond the cap."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import grpc
import pytest
import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from inspect_otel.receiver import Receiver, ReceiverConfig
from inspect_otel.receiver import _claims, _mlflow_names
from tests.receiver.mlflow_view import check_eval, snapshot
from tests.receiver.proxy import TcpProxy
from tests.receiver.synth import SynthEval, logs_request, trace_request
from tests.support.wait import wait_for


def _send(rp, ev: SynthEval) -> None:
    for sig, body in ev.batches(size=100):
        assert rp.post(sig, body).status_code == 200


# --- ids can never stall the writer ---------------------------------------------------------
def test_claim_keys_are_fixed_length_hashes():
    assert _claims.claim_key("a!b") != _claims.claim_key("a_b")
    long_id = "e" * 256
    assert len(_claims.claim_key(long_id)) == len(_claims.claim_key("x")) <= 250
    assert _claims.claim_experiment_name("1", "a!b") != _claims.claim_experiment_name("1", "a_b")
    assert len(_claims.claim_experiment_name("123456789", long_id)) < 120


def test_longest_ids_then_a_valid_eval_lands(mlflow_server, mlflow_client, receiver_factory,
                                             tmp_path):
    """A 256-character eval and run id (the longest that passes validation; 229 and more used
    to abort every writer pass for good), then a valid eval: both land completely."""
    class LongIds(SynthEval):
        def sample_uuid(self, task: str, idx: int, epoch: int) -> str:
            return f"long-ids-{task}-s{idx}-e{epoch}"  # (MLflow caps session ids at 250)

    long_run = "r" * 239 + "-long"
    long_eval = LongIds(run_id=long_run, samples=2).build()
    assert len(long_eval.eval_id("task_a")) == 256
    normal = SynthEval(run_id="after-long", samples=2).build()
    rp = receiver_factory(mlflow_server.url, "long-ids", tmp_path / "r")
    _send(rp, long_eval)
    _send(rp, normal)
    h = rp.wait_idle(180)
    assert h["dead_letters"]["count"] == 0 and h["failed_runs"] == [], h
    check_eval(snapshot(mlflow_client, "long-ids", long_run), long_eval)
    check_eval(snapshot(mlflow_client, "long-ids", "after-long"), normal)
    # bookkeeping out of sight: the claim and finalization tags under MLflow's hidden prefix
    exp = mlflow_client.get_experiment_by_name("long-ids")
    for run in mlflow_client.search_runs([exp.experiment_id]):
        keys = set(run.data.tags)
        assert not {k for k in keys if k.startswith(("inspect.otel.claim", "inspect.otel.fin"))}
        assert _claims.TAG_CLAIM in keys, keys
        if run.data.tags.get(_mlflow_names.TAG_ROLE) == _mlflow_names.ROLE_TASK:
            assert _mlflow_names.TAG_FINALIZED in keys
    assert _claims.TAG_CLAIM.startswith("mlflow.") and _mlflow_names.TAG_FINALIZED.startswith(
        "mlflow.")


def test_a_refused_identity_blocks_no_other(mlflow_server, mlflow_client, receiver_factory,
                                            tmp_path):
    """Someone with MLflow access squats the claim of one Inspect task (its claim experiment
    without a claimed run): that identity is marked failed and shown in /health; a valid eval
    sent after it lands completely, and the receiver gets idle."""
    exp_id = mlflow_client.create_experiment("refused-identity")
    squatted = SynthEval(run_id="squatted", samples=1).build()
    mlflow_client.create_experiment(
        _claims.claim_experiment_name(exp_id, squatted.eval_id("task_a")))
    normal = SynthEval(run_id="beside-squatted", samples=2).build()
    rp = receiver_factory(mlflow_server.url, "refused-identity", tmp_path / "r")
    _send(rp, squatted)
    _send(rp, normal)
    h = rp.wait_idle(180)
    check_eval(snapshot(mlflow_client, "refused-identity", "beside-squatted"), normal)
    failed = {(f["role"], f["inspect_id"]) for f in h["failed_runs"]}
    assert failed == {("task", squatted.eval_id("task_a"))}, h
    assert h["spool"]["failed_runs"] == 1 and h["spool"]["pending_spans"] == 0


# --- stay in your experiment -----------------------------------------------------------------
def _trace_view(client, exp_name: str) -> dict:
    exp = client.get_experiment_by_name(exp_name)
    out = {}
    for t in client.search_traces(locations=[exp.experiment_id], max_results=500):
        full = client.get_trace(t.info.trace_id)
        out[t.info.trace_id] = (sorted(s.span_id for s in full.data.spans),
                                sorted(a.assessment_id for a in full.info.assessments or []))
    return out


@pytest.fixture(scope="module")
def victim(mlflow_server, tmp_path_factory):
    """An eval of experiment 'victim-exp', written by its own receiver."""
    from tests.support.receiver import start_receiver

    ev = SynthEval(run_id="victim", samples=3, scorers=("match", "judge")).build()
    rp = start_receiver(mlflow_server.url, tmp_path_factory.mktemp("victim"), "victim-exp")
    try:
        _send(rp, ev)
        rp.wait_idle(180)
    finally:
        rp.kill()
    return ev


def test_foreign_traces_rejected_at_ingest(mlflow_server, mlflow_client, receiver_factory,
                                           tmp_path, victim):
    before = _trace_view(mlflow_client, "victim-exp")
    assert len(before) == 4  # 3 samples + the run trace
    rp = receiver_factory(mlflow_server.url, "attacker-exp", tmp_path / "r")
    rp.wait_idle(60)
    own = SynthEval(run_id="attacker-own", samples=2).build()
    # the victim's spans and results, next to an eval of the attacker's own experiment: the
    # first request is accepted (the acknowledgement never calls MLflow) and the writer drops
    # the victim's part; sent again, it is rejected in the partial success
    spans = victim.spans() + own.spans()

    def rejected(signal: str, body: bytes, response, field: str) -> object:
        r = rp.post(signal, body)
        assert r.status_code == 200
        res = response.FromString(r.content)
        return getattr(res.partial_success, field) > 0 and res

    res = wait_for(lambda: rejected("traces", trace_request(spans).SerializeToString(),
                                    ExportTraceServiceResponse, "rejected_spans"), 60,
                   what="foreign spans rejected")
    assert res.partial_success.rejected_spans == len(victim.spans())
    assert "another MLflow experiment" in res.partial_success.error_message
    res = wait_for(lambda: rejected("logs", logs_request(victim.logs() + own.logs())
                                    .SerializeToString(), ExportLogsServiceResponse,
                                    "rejected_log_records"), 60, what="foreign results rejected")
    assert res.partial_success.rejected_log_records == len(victim.logs())
    h = rp.wait_idle(180)
    assert h["writer"]["foreign_rejected"] >= len(victim.spans()) + len(victim.logs())
    assert _trace_view(mlflow_client, "victim-exp") == before
    check_eval(snapshot(mlflow_client, "attacker-exp", "attacker-own"), own)


def test_foreign_traces_never_written_when_accepted_blind(mlflow_server, mlflow_client,
                                                          receiver_factory, tmp_path, victim):
    """MLflow unreachable when the victim's data arrives: the receiver accepts it (the ack never
    waits on MLflow), and its writer refuses it once MLflow is back, before writing anything."""
    before = _trace_view(mlflow_client, "victim-exp")
    proxy = TcpProxy(mlflow_server.port).start()
    port = proxy.port
    proxy.stop()
    rp = receiver_factory(f"http://127.0.0.1:{port}", "attacker-blind", tmp_path / "r")
    wait_for(lambda: rp.health()["mlflow"]["writer_ok"] is False, 60, what="writer sees no MLflow")
    for sig, body in victim.batches(size=100):
        r = rp.post(sig, body)
        assert r.status_code == 200
    proxy = TcpProxy(mlflow_server.port, port=port).start()
    try:
        h = rp.wait_idle(180)
    finally:
        proxy.stop()
    assert h["writer"]["foreign_rejected"] == len(victim.spans()) + len(victim.logs()), h
    assert _trace_view(mlflow_client, "victim-exp") == before
    exp = mlflow_client.get_experiment_by_name("attacker-blind")
    assert mlflow_client.search_traces(locations=[exp.experiment_id]) == []


# --- /health and the tracking URI ----------------------------------------------------------
def test_health_without_token_and_redacted_uri(mlflow_server, receiver_factory, tmp_path):
    token = "health-token-123"
    uri = f"http://alice:pa55word-xyz@127.0.0.1:{mlflow_server.port}"
    rp = receiver_factory(uri, "health-token", tmp_path / "r",
                          env={"INSPECT_OTEL_RECEIVER_TOKEN": token})
    anon = requests.get(rp.url + "/health", timeout=10)
    assert anon.status_code == 200 and set(anon.json()) == {"status"}
    wrong = requests.get(rp.url + "/health", timeout=10,
                         headers={"Authorization": "Bearer nope"}).json()
    assert set(wrong) == {"status"}
    auth = {"Authorization": f"Bearer {token}"}
    full = wait_for(lambda: (h := requests.get(rp.url + "/health", headers=auth,
                                               timeout=10).json())["mlflow"]["writer_ok"] and h,
                    60, what="writer ok")
    assert full["mlflow"]["tracking_uri"] == f"http://alice:***@127.0.0.1:{mlflow_server.port}"
    assert "idle" in full and "pending_bytes" in full["spool"]
    text = json.dumps(full)
    assert "pa55word-xyz" not in text and str(rp.data_dir) not in text
    assert "pa55word-xyz" not in rp.log()


@pytest.mark.parametrize("uri, shown", [
    ("http://alice:pw@127.0.0.1:5000/x", "http://alice:***@127.0.0.1:5000/x"),
    ("https://tok_abc@127.0.0.1/v1", "https://***@127.0.0.1/v1"),  # a bare user name is a token
    ("postgresql://u:p@localhost/db", "postgresql://u:***@localhost/db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
])
def test_redact_uri_hides_every_credential(uri, shown):
    from inspect_otel.stack import redact_uri

    assert redact_uri(uri) == shown


def test_health_details_without_a_token_configured(mlflow_server, receiver_factory, tmp_path):
    rp = receiver_factory(mlflow_server.url, "health-open", tmp_path / "r")
    h = rp.health()
    assert {"status", "idle", "spool", "mlflow", "writer"} <= set(h)
    assert "path" not in h["spool"]


# --- requests in flight --------------------------------------------------------------------
def _slow_body(port: int) -> socket.socket:
    """An OTLP request whose body never finishes: it stays in flight."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
              b"Content-Length: 100000\r\n\r\n" + b"\x0a" * 10)
    return s


def test_requests_in_flight_are_capped(mlflow_server, receiver_factory, tmp_path):
    rp = receiver_factory(mlflow_server.url, "in-flight", tmp_path / "r",
                          "--max-concurrent-requests", "3")
    body = trace_request(SynthEval(run_id="in-flight", samples=1).build().spans()).SerializeToString()
    slow = [_slow_body(rp.port) for _ in range(3)]
    try:
        # the server says the three are in flight (/health is not capped): the next one is over
        wait_for(lambda: rp.health()["requests_in_flight"]["http"] == 3, 30,
                 what="three requests in flight")
        r = rp.post("traces", body)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1" and "in flight" in r.text
    finally:
        for s in slow:
            s.close()
    wait_for(lambda: rp.health()["requests_in_flight"]["http"] == 0, 30, what="none in flight")
    assert rp.post("traces", body).status_code == 200


def test_grpc_requests_in_flight_are_capped(mlflow_server, tmp_path):
    """In process: the spool's write lock is held, so two gRPC exports stay in flight (the
    server counts them); a third is RESOURCE_EXHAUSTED (retried by OTLP exporters), and all is
    well once they finish."""
    receiver = Receiver(ReceiverConfig(mlflow_uri=mlflow_server.url, port=0, grpc_port=0,
                                       data_dir=tmp_path, max_concurrent_requests=2)).start()
    body = trace_request(SynthEval(run_id="grpc-cap", samples=1).build().spans()).SerializeToString()
    channel = grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}")
    export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                 request_serializer=None, response_deserializer=None)
    results: list = []
    try:
        with receiver.spool.db.write_lock:
            held = [threading.Thread(target=lambda: results.append(export(body, timeout=60)))
                    for _ in range(2)]
            for t in held:
                t.start()
            wait_for(lambda: receiver.in_flight.counts()["grpc"] == 2, 30,
                     what="two gRPC exports in flight")
            with pytest.raises(grpc.RpcError) as e:
                export(body, timeout=10)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for t in held:
            t.join(30)
        assert len(results) == 2
        assert receiver.in_flight.counts()["grpc"] == 0
        export(body, timeout=10)
    finally:
        channel.close()
        receiver.stop(drain_s=0)


# --- bounded storage (in process) -----------------------------------------------------------
def test_resources_and_forwarded_rows_bounded(tmp_path: Path):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from inspect_otel.receiver._spool import Spool
    from tests.receiver.synth import kv, plain_span

    spool = Spool(tmp_path / "spool.db")
    # a resource whose spans are all rejected is not stored
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", "x" * 10_000))
    rs.scope_spans.add().spans.append(plain_span())
    res = spool.ingest_traces(req)
    assert res.rejected == 1 and res.accepted == 0
    assert spool.db.read("SELECT COUNT(*) FROM resources")[0][0] == 0
    assert spool.pending_bytes == 0

    ev = SynthEval(run_id="bounded", samples=2).build()
    req = trace_request(ev.spans())
    req.resource_spans[0].resource.attributes.append(kv("big", "y" * 5000))
    spool.ingest_traces(req)
    rsize = len(req.resource_spans[0].resource.SerializeToString())
    span_bytes = sum(len(s.SerializeToString()) for s in ev.spans())
    (result_bytes,) = spool.db.read("SELECT SUM(LENGTH(data)) FROM results")[0]  # span events
    assert spool.pending_bytes == span_bytes + rsize + result_bytes == spool.db.count_pending_bytes()
    spool.ingest_logs(logs_request(ev.logs()))
    assert spool.pending_bytes == spool.db.count_pending_bytes()

    spans = spool.drain.pending_spans(10_000, 1 << 30)
    spool.drain.mark_spans_forwarded(spans)
    assert spool.db.read("SELECT COUNT(*) FROM spans")[0][0] == 0
    assert spool.db.read("SELECT COUNT(*) FROM resources")[0][0] == 0
    assert spool.db.read("SELECT COUNT(*) FROM traces")[0][0] == len({s.trace_id for s in spans})
    results = spool.drain.pending_results()
    assert len(results) == len(ev.logs())  # the trace was forwarded here: results are ready
    spool.drain.mark_results_applied(results)
    assert spool.pending_bytes == 0 == spool.db.count_pending_bytes()
    assert {r[0] for r in spool.db.read("SELECT data FROM results")} == {"{}"}
