"""Every bad-input case gets the right status and a clear message; the server keeps serving."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
import requests

from tests.receiver.synth import SynthEval, plain_span, trace_request

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def rp(mlflow_server, tmp_path_factory):
    from tests.support.receiver import start_receiver

    proc = start_receiver(mlflow_server.url, tmp_path_factory.mktemp("bad"), "bad-input",
                          "--max-body-mb", "1", env={"INSPECT_OTEL_RECEIVER_TOKEN": TOKEN})
    yield proc
    proc.kill()


def good_body() -> bytes:
    ev = SynthEval(run_id="bad-good", samples=1).build()
    return trace_request(ev.spans()[:2]).SerializeToString()


def status(resp: requests.Response) -> tuple[int, str]:
    try:
        msg = resp.json()["message"]
    except ValueError:
        from google.rpc import status_pb2
        msg = status_pb2.Status.FromString(resp.content).message
    return resp.status_code, msg


@pytest.mark.parametrize("case", [
    "malformed_protobuf", "malformed_json", "json_not_object", "bad_hex_id", "wrong_type",
    "no_type", "unknown_path", "get_on_otlp", "oversized", "gzip_bomb", "bad_gzip",
    "unknown_encoding", "no_token", "wrong_token",
])
def test_bad_input(rp, case):
    pb = {"Content-Type": "application/x-protobuf", **AUTH}
    js = {"Content-Type": "application/json", **AUTH}
    url = rp.url
    if case == "malformed_protobuf":
        r = requests.post(f"{url}/v1/traces", data=b"\xff\xff\xff\x0f garbage", headers=pb)
        want, text = 400, "malformed protobuf"
    elif case == "malformed_json":
        r = requests.post(f"{url}/v1/traces", data=b'{"resourceSpans": [', headers=js)
        want, text = 400, "malformed JSON"
    elif case == "json_not_object":
        r = requests.post(f"{url}/v1/logs", data=b"[1, 2]", headers=js)
        want, text = 400, "must be an object"
    elif case == "bad_hex_id":
        body = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "00"}]}]}]}
        r = requests.post(f"{url}/v1/traces", data=json.dumps(body), headers=js)
        want, text = 400, "not valid hex"
    elif case == "wrong_type":
        r = requests.post(f"{url}/v1/traces", data=good_body(),
                          headers={"Content-Type": "text/plain", **AUTH})
        want, text = 415, "unsupported Content-Type"
    elif case == "no_type":
        r = requests.post(f"{url}/v1/traces", data=good_body(), headers=AUTH)
        want, text = 415, "unsupported Content-Type"
    elif case == "unknown_path":
        r = requests.post(f"{url}/v1/profiles", data=good_body(), headers=pb)
        want, text = 404, "unknown path"
    elif case == "get_on_otlp":
        r = requests.get(f"{url}/v1/traces", headers=AUTH)
        want, text = 405, "not allowed"
    elif case == "oversized":
        r = requests.post(f"{url}/v1/traces", data=b"\0" * (2 << 20), headers=pb)
        want, text = 413, "exceeds the limit"
    elif case == "gzip_bomb":
        bomb = gzip.compress(b"\0" * (64 << 20))  # ~64 KiB on the wire, 64 MiB inflated
        assert len(bomb) < (1 << 20)
        r = requests.post(f"{url}/v1/traces", data=bomb, headers={**pb, "Content-Encoding": "gzip"})
        want, text = 413, "decompressed body exceeds"
    elif case == "bad_gzip":
        r = requests.post(f"{url}/v1/traces", data=b"not gzip at all",
                          headers={**pb, "Content-Encoding": "gzip"})
        want, text = 400, "invalid gzip"
    elif case == "unknown_encoding":
        r = requests.post(f"{url}/v1/traces", data=good_body(),
                          headers={**pb, "Content-Encoding": "br"})
        want, text = 415, "unsupported Content-Encoding"
    elif case == "no_token":
        r = requests.post(f"{url}/v1/traces", data=good_body(),
                          headers={"Content-Type": "application/x-protobuf"})
        want, text = 401, "bearer token"
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    else:
        r = requests.post(f"{url}/v1/traces", data=good_body(),
                          headers={"Content-Type": "application/x-protobuf",
                                   "Authorization": "Bearer wrong"})
        want, text = 401, "bearer token"
    code, msg = status(r)
    assert code == want, (code, msg)
    assert text in msg, msg
    # and the server keeps serving
    ok = requests.post(f"{url}/v1/traces", data=good_body(), headers=pb)
    assert ok.status_code == 200


def test_compressed_good_bodies_accepted(rp):
    pb = {"Content-Type": "application/x-protobuf", **AUTH}
    for enc, data in (("gzip", gzip.compress(good_body())), ("deflate", zlib.compress(good_body()))):
        r = requests.post(f"{rp.url}/v1/traces", data=data, headers={**pb, "Content-Encoding": enc})
        assert r.status_code == 200, (enc, r.text)


def test_plain_otel_spans_accepted_but_ignored(rp):
    """Spans from other apps: 200 with OTLP partial success naming what was ignored."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    body = trace_request([plain_span(1), plain_span(2)], scope="some.other.lib",
                         service="shop").SerializeToString()
    r = requests.post(f"{rp.url}/v1/traces", data=body,
                      headers={"Content-Type": "application/x-protobuf", **AUTH})
    assert r.status_code == 200
    resp = ExportTraceServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_spans == 2
    assert "without Inspect attributes" in resp.partial_success.error_message
    # JSON flavour answers JSON
    from tests.receiver.synth import to_otlp_json
    r = requests.post(f"{rp.url}/v1/traces", headers={"Content-Type": "application/json", **AUTH},
                      data=to_otlp_json(trace_request([plain_span(3)], scope="x")))
    assert r.status_code == 200 and r.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert rp.health()["spool"]["spans"] >= 0


def test_metrics_and_other_logs_accepted(rp):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.logs.v1 import logs_pb2

    from tests.receiver.synth import logs_request

    pb = {"Content-Type": "application/x-protobuf", **AUTH}
    r = requests.post(f"{rp.url}/v1/metrics", data=ExportMetricsServiceRequest().SerializeToString(),
                      headers=pb)
    assert r.status_code == 200
    rec = logs_pb2.LogRecord(time_unix_nano=1)
    rec.body.string_value = "hello"
    r = requests.post(f"{rp.url}/v1/logs", data=logs_request([rec]).SerializeToString(), headers=pb)
    assert r.status_code == 200
    resp = ExportLogsServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_log_records == 1


def test_health_is_json(rp):
    h = requests.get(f"{rp.url}/health", headers=AUTH).json()
    assert h["mlflow"]["reachable"] is True
    assert {"pending_spans", "pending_bytes", "max_bytes"} <= set(h["spool"])


def test_json_of_the_wrong_shape_is_400_not_503(rp):
    """Defect 1: wrong element types and deep nesting raised inside decoding and came back as a
    retryable 503 with the exception text; a standard exporter retried them forever."""
    js = {"Content-Type": "application/json", **AUTH}
    deep = b'{"resourceSpans":' + b"[" * 5000 + b"]" * 5000 + b"}"
    for body in (b'{"resourceSpans":["a"]}', b'{"resourceSpans":[{"scopeSpans":[1]}]}', deep,
                 b'{"resourceSpans":[],"resourceSpans":[]}'):
        r = requests.post(f"{rp.url}/v1/traces", data=body, headers=js)
        code, msg = status(r)
        assert code == 400 and "Retry-After" not in r.headers, (code, msg)
        assert "Error" not in msg and len(msg) <= 300, msg


def test_application_protobuf_content_type(rp):
    """application/protobuf (the IANA name of the binary encoding) is accepted like
    application/x-protobuf (the OTLP spec's name) and answered in the same media type."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    r = requests.post(f"{rp.url}/v1/traces", data=good_body(),
                      headers={"Content-Type": "application/protobuf", **AUTH})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/protobuf")
    assert ExportTraceServiceResponse.FromString(r.content).partial_success.rejected_spans == 0
    r = requests.post(f"{rp.url}/v1/traces", data=b"\xff\xff garbage",
                      headers={"Content-Type": "application/protobuf", **AUTH})
    code, msg = status(r)
    assert code == 400 and r.headers["content-type"].startswith("application/protobuf")


def test_grpc_malformed_message_is_invalid_argument(rp):
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{rp.grpc_port}")
    md = (("authorization", f"Bearer {TOKEN}"),)
    try:
        for service in ("trace.v1.TraceService", "logs.v1.LogsService", "metrics.v1.MetricsService"):
            export = channel.unary_unary(f"/opentelemetry.proto.collector.{service}/Export")
            try:
                export(b"\xff\xff\xff\x0f garbage", metadata=md, timeout=10)
                raise AssertionError("a malformed gRPC message was accepted")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (service, e.code())
                assert "malformed protobuf" in e.details()
            try:
                export(b"\xff", metadata=(("authorization", "Bearer wrong"),), timeout=10)
                raise AssertionError("an unauthenticated gRPC message was accepted")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        assert ok(good_body(), metadata=md, timeout=10) == b""  # an empty response: all accepted
    finally:
        channel.close()


def test_grpc_compression_bomb_is_resource_exhausted(rp):
    """A gzip-compressed gRPC message that inflates past --max-body-mb (1 MiB here): grpc's own
    receive limit answers RESOURCE_EXHAUSTED before our code sees it; the server keeps serving."""
    import grpc

    bomb = b"\0" * (2 << 20)  # 2 MiB of zeros, about 2 KiB on the wire (grpc alone allows 4 MiB)
    channel = grpc.insecure_channel(f"127.0.0.1:{rp.grpc_port}")
    md = (("authorization", f"Bearer {TOKEN}"),)
    export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
    try:
        with pytest.raises(grpc.RpcError) as err:
            export(bomb, metadata=md, timeout=30, compression=grpc.Compression.Gzip)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.code()
        assert export(good_body(), metadata=md, timeout=10,
                      compression=grpc.Compression.Gzip) == b""  # compressed and small: accepted
    finally:
        channel.close()
    assert rp.health()["status"] in ("ok", "degraded")


def test_client_disconnect_is_not_an_error(rp):
    """A client that goes away mid-body gets no answer and leaves an INFO line, not an ERROR
    with a traceback; the server keeps serving."""
    import socket
    import time

    before = rp.log()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", rp.port), timeout=5) as sock:
            sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/x-protobuf\r\nAuthorization: Bearer " + TOKEN.encode()
                         + b"\r\nContent-Length: 100000\r\n\r\n" + b"\x0a" * 100)
            time.sleep(0.2)
    ok = requests.post(f"{rp.url}/v1/traces", data=good_body(),
                       headers={"Content-Type": "application/x-protobuf", **AUTH})
    assert ok.status_code == 200
    from tests.support.wait import wait_for
    new = wait_for(lambda: (t := rp.log()[len(before):]).count("disconnected") >= 3 and t, 10,
                   what="disconnects logged")
    assert "Traceback" not in new and " ERROR " not in new, new


def test_nul_characters_land_on_postgresql(pg_mlflow_server, receiver_factory):
    """NUL characters are valid in OTLP strings but PostgreSQL text refuses them: as params,
    trace tags or root inputs they made MLflow (on PostgreSQL) refuse the task's params batch and
    the sample's trace. The receiver drops NUL from everything it hands to MLflow."""
    import json as _json

    from mlflow import MlflowClient

    from inspect_otel import semconv as sc
    from inspect_otel.receiver import _mlflow_names
    from tests.receiver.hostile import sample_root, task_span, with_attrs
    from tests.receiver.mlflow_view import runs
    from tests.receiver.synth import trace_request

    ev = SynthEval(run_id="pg-nul", samples=1).build()
    task, root = task_span(ev), sample_root(ev)
    changed = {
        task.span_id: with_attrs(task, {sc.INSPECT_TASK_ARGS: _json.dumps(
            {"level": 2, "note": "a\x00b"}), sc.INSPECT_TASK_SOLVER: "gen\x00erate"},
            new_id=False),
        root.span_id: with_attrs(root, {sc.INSPECT_MODEL: "mockllm/model\x00",
                                        sc.INSPECT_SAMPLE_ID: "1\x00"}, new_id=False),
    }
    spans = [changed.get(s.span_id, s) for s in ev.spans()]
    rp = receiver_factory(pg_mlflow_server.url, "pg-nul")
    assert rp.post("traces", trace_request(spans).SerializeToString()).status_code == 200
    h = rp.wait_idle(120)
    assert h["dead_letters"]["count"] == 0, h["dead_letters"]
    client = MlflowClient(pg_mlflow_server.url)
    exp = client.get_experiment_by_name("pg-nul")
    (task_run,) = runs(client, exp.experiment_id, ev.run_id, _mlflow_names.ROLE_TASK)
    assert task_run.info.status == "FINISHED"
    assert task_run.data.params["task_args.note"] == "ab"
    assert task_run.data.params["solver"] == "generate"
    (trace,) = client.search_traces(locations=[exp.experiment_id], run_id=task_run.info.run_id)
    assert trace.info.tags[sc.INSPECT_SAMPLE_ID] == "1"
    assert json.loads(trace.info.request_preview)["sample_id"] == "1"
    assert trace.info.tags[sc.INSPECT_MODEL] == "mockllm/model"
