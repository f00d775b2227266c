"""End to end over real sockets: synthetic hook output -> receiver process -> real MLflow (the
delivery test on each backend store: sqlite with one worker, PostgreSQL with several)."""

from __future__ import annotations

import grpc

from tests.receiver.mlflow_view import check_eval, diff, snapshot
from tests.receiver.synth import SynthEval, logs_request, to_otlp_json, trace_request


def deliver(rp, batches) -> None:
    for sig, body in batches:
        r = rp.post(sig, body)
        assert r.status_code == 200, (r.status_code, r.text)


def test_shuffled_duplicated_delivery_lands_once(mlflow_backend, backend_client, receiver_factory):
    """Out of order (samples and results before their task span), arbitrary batches, every
    request twice: one run per task, no duplicate metrics, traces or assessments."""
    ev = SynthEval(run_id="e2e-shuffle", tasks=("task_a", "task_b"), samples=3, epochs=2,
                   scorers=("match", "judge"), model_graded=("judge",)).build()
    rp = receiver_factory(mlflow_backend.url, "e2e", settle=30.0)
    batches = ev.batches(size=17, shuffle_seed=3)
    deliver(rp, batches)
    deliver(rp, list(reversed(batches)))  # redelivery, in another order
    rp.wait_idle(180)
    snap = snapshot(backend_client, "e2e", ev.run_id)
    check_eval(snap, ev, exact_history=True)

    # A third full delivery (e.g. `inspect-otel export` of the same log) changes nothing.
    deliver(rp, ev.batches(size=1000))
    rp.wait_idle()
    again = snapshot(backend_client, "e2e", ev.run_id)
    assert not diff(snap, again), diff(snap, again)


def test_grpc_and_json_paths(mlflow_server, mlflow_client, receiver_factory):
    """OTLP/gRPC (with bearer token metadata) and OTLP/JSON carry the same data. (The transport
    is the receiver's side alone: one backend is enough.)"""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    ev = SynthEval(run_id="e2e-grpc", samples=2, scorers=("match",)).build()
    rp = receiver_factory(mlflow_server.url, "e2e-grpc", env={"INSPECT_OTEL_RECEIVER_TOKEN": "t0k"})
    channel = grpc.insecure_channel(f"127.0.0.1:{rp.grpc_port}")
    traces = trace_service_pb2_grpc.TraceServiceStub(channel)
    logs = logs_service_pb2_grpc.LogsServiceStub(channel)
    md = (("authorization", "Bearer t0k"),)
    spans = ev.spans()
    try:
        traces.Export(trace_request(spans[:3]), metadata=(("authorization", "Bearer nope"),))
        raise AssertionError("unauthenticated gRPC export was accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED
    resp = traces.Export(trace_request(spans[: len(spans) // 2]), metadata=md,
                         compression=grpc.Compression.Gzip)
    assert resp.partial_success.rejected_spans == 0
    logs.Export(logs_request(ev.logs()), metadata=md)
    # second half as OTLP/JSON (hex ids, as the spec says)
    r = rp.post("traces", to_otlp_json(trace_request(spans[len(spans) // 2:])).encode(), ctype="application/json",
                Authorization="Bearer t0k")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    rp.wait_idle(180)
    snap = snapshot(mlflow_client, "e2e-grpc", ev.run_id)
    check_eval(snap, ev)
    channel.close()
