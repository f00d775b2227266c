"""A seeded black-box fuzz of a real receiver process (token on), over OTLP/HTTP and OTLP/gRPC:
malformed bodies of every shape, hostile but valid OTLP, overwrites, orphaned results, client
disconnects, from several clients at once; then a kill -9 and a restart on the same spool. The
receiver must answer every malformed body with 400 / INVALID_ARGUMENT (short, no internals),
reject bad spans one by one in the OTLP partial success, count its pending bytes exactly, expire
orphans, keep serving, and land a valid eval sent afterwards completely in MLflow.

``INSPECT_OTEL_FUZZ_SEED`` / ``INSPECT_OTEL_FUZZ_CASES`` replay or widen a run (defaults: a fixed
seed, a few hundred cases)."""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import requests
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from inspect_otel import semconv as sc
from inspect_otel.receiver import _mlflow_names
from tests.receiver.hostile import (
    INTERNAL,
    bad_spans,
    deep_json,
    deep_value,
    nested_json_value,
    nested_protobuf_body,
    padded,
    span_json,
    task_span,
    with_attrs,
    with_flags,
)
from tests.receiver.mlflow_view import check_eval, complete, runs, snapshot
from tests.receiver.synth import SynthEval, logs_request, to_otlp_json, trace_request
from tests.support.receiver import start_receiver
from tests.support.wait import wait_for

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXPERIMENT = "fuzz"
SEED = int(os.environ.get("INSPECT_OTEL_FUZZ_SEED", "20261127"))
CASES = int(os.environ.get("INSPECT_OTEL_FUZZ_CASES", "300"))
ORPHAN_TTL_S = 3.0
ARGS = ("--orphan-ttl-seconds", str(ORPHAN_TTL_S), "--max-body-mb", "4")
GRPC_PATHS = {"traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
              "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
              "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"}


@dataclass
class Case:
    name: str
    transport: str  # "http" | "grpc" | "disconnect"
    signal: str
    body: bytes
    ctype: str = "application/x-protobuf"
    expect: str = "ok|400"  # "|"-separated outcomes: ok, 400, 415, rejected=<n>
    encoding: str | None = None


@dataclass
class Outcome:
    case: Case
    status: str  # "ok" | "400" | "415" | ... | "grpc:<CODE>"
    message: str = ""
    rejected: int = 0


# --- case generators ---------------------------------------------------------------------------
def _json_nodes(obj: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _json_nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _json_nodes(v, path + (i,))
    return out


HOSTILE_JSON_VALUES: list[Any] = ["a", "", 1, -1, 10 ** 30, 1.5, True, None, [], {}, [1, 2],
                                  {"x": 1}, ["a"], [[[]]], "zz" * 20, "\u0000", "é" * 10]


def mutate_json(rnd: random.Random, base: dict) -> bytes:
    """A valid OTLP/JSON body with one node swapped for a value of another shape."""
    data = json.loads(json.dumps(base))
    path = rnd.choice(_json_nodes(data)[1:])
    parent = data
    for p in path[:-1]:
        parent = parent[p]
    parent[path[-1]] = rnd.choice(HOSTILE_JSON_VALUES)
    return json.dumps(data).encode()


def corrupt_text(rnd: random.Random, body: bytes) -> bytes:
    out = bytearray(body)
    for _ in range(rnd.randint(1, 4)):
        pos = rnd.randrange(len(out) + 1)
        op = rnd.random()
        if op < 0.3 and pos < len(out):
            out[pos] = rnd.randrange(256)
        elif op < 0.6:
            del out[pos: pos + rnd.randint(1, 40)]
        else:
            out[pos:pos] = rnd.choice([b"[", b"{", b'"', b"\\", b"\xff", b"NaN", b"9" * 40,
                                       b'"resourceSpans":[],', b"\x00"])
    return bytes(out)


def _json_logs(req: Any) -> bytes:
    body = json_format.MessageToDict(req)
    for rl in body.get("resourceLogs", []):
        for sl in rl.get("scopeLogs", []):
            for rec in sl.get("logRecords", []):
                for f in ("traceId", "spanId"):
                    if f in rec:
                        rec[f] = base64.b64decode(rec[f]).hex()
    return json.dumps(body).encode()


def generate(rnd: random.Random, n: int, noise: SynthEval, ghost: SynthEval) -> list[Case]:
    spans, logs = noise.spans(), noise.logs()
    json_traces = json.loads(to_otlp_json(trace_request(spans[:4])))
    json_logs = json.loads(_json_logs(logs_request(logs[:2])))
    pb_traces = trace_request(spans[:6]).SerializeToString()
    overwrite_target = spans[1]
    bad = bad_spans(noise)
    cases: list[Case] = []
    kinds = ["json_shape", "json_text", "protobuf_bytes", "isolation", "isolation", "deep",
             "overwrite", "orphan", "content_type", "metrics", "disconnect"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        transport = "grpc" if rnd.random() < 0.4 else "http"
        name = f"{i}:{kind}"
        if kind == "json_shape":
            base, signal = ((json_traces, "traces") if rnd.random() < 0.7 else (json_logs, "logs"))
            cases.append(Case(name, "http", signal, mutate_json(rnd, base), "application/json"))
        elif kind == "json_text":
            body = corrupt_text(rnd, json.dumps(json_traces).encode())
            cases.append(Case(name, "http", "traces", body, "application/json"))
        elif kind == "protobuf_bytes":
            body = corrupt_text(rnd, pb_traces)
            ctype = rnd.choice(["application/x-protobuf", "application/protobuf"])
            cases.append(Case(name, transport, "traces", body, ctype))
        elif kind == "isolation":
            good = rnd.sample(spans, rnd.randint(0, 3))
            picked = rnd.sample(bad, rnd.randint(1, 3))
            mixed = good + picked
            rnd.shuffle(mixed)
            req = trace_request(mixed)
            if transport == "http" and rnd.random() < 0.5:
                cases.append(Case(name, "http", "traces", to_otlp_json(req).encode(),
                                  "application/json", f"rejected={len(picked)}"))
            else:
                cases.append(Case(name, transport, "traces", req.SerializeToString(),
                                  expect=f"rejected={len(picked)}"))
        elif kind == "deep":
            choice = rnd.randrange(4)
            if choice == 0:
                body = span_json(nested_json_value(rnd.choice(["kv", "arr"]),
                                                   rnd.choice([200, 1000, 5000])))
                cases.append(Case(name, "http", "traces", body, "application/json", "400"))
            elif choice == 1:
                body = b"[" * 50_000 + b"]" * 50_000
                cases.append(Case(name, "http", rnd.choice(["traces", "logs", "metrics"]), body,
                                  "application/json", "400"))
            elif choice == 2:
                cases.append(Case(name, transport, "traces",
                                  nested_protobuf_body(rnd.choice([120, 1000, 5000])), expect="400"))
            else:  # valid protobuf, attribute nested past the receiver's bound: that span alone
                span = with_attrs(spans[rnd.randrange(len(spans))],
                                  {"inspect.deep": deep_value(rnd.randint(17, 30))})
                cases.append(Case(name, transport, "traces",
                                  trace_request([span, spans[0]]).SerializeToString(),
                                  expect="rejected=1"))
        elif kind == "overwrite":
            span = padded(overwrite_target, rnd.choice([0, 100, 10_000, 100_000]), i)
            cases.append(Case(name, transport, "traces", trace_request([span]).SerializeToString(),
                              expect="rejected=0"))
        elif kind == "orphan":
            recs = with_flags(ghost.logs()[rnd.randrange(len(ghost.logs())):][:2],
                              rnd.choice([0x00, 0x01]))
            cases.append(Case(name, transport, "logs", logs_request(recs).SerializeToString(),
                              expect="rejected=0"))
        elif kind == "content_type":
            ctype, enc, expect = rnd.choice([
                ("application/protobuf", None, "ok"), ("application/x-protobuf; charset=x", None,
                                                       "ok"),
                ("text/plain", None, "415"), ("application/protobuf; encoding=json", None, "415"),
                ("application/x-protobuf", "br", "415"), ("application/x-protobuf", "gzip", "400"),
            ])
            cases.append(Case(name, "http", "traces", pb_traces, ctype, expect, encoding=enc))
        elif kind == "metrics":
            body = ExportMetricsServiceRequest().SerializeToString()
            cases.append(Case(name, transport, "metrics", corrupt_text(rnd, body + b"\x0a\x00")))
        else:
            cases.append(Case(name, "disconnect", "traces", pb_traces))
    return cases


# --- sending -------------------------------------------------------------------------------------
def send(case: Case, url: str, port: int, channel: grpc.Channel) -> Outcome:
    if case.transport == "disconnect":
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/x-protobuf\r\nAuthorization: Bearer " + TOKEN.encode()
                         + b"\r\nContent-Length: %d\r\n\r\n" % (len(case.body) + 1000)
                         + case.body[:50])
        return Outcome(case, "disconnect")
    if case.transport == "grpc":
        export = channel.unary_unary(GRPC_PATHS[case.signal])
        try:
            out = export(case.body, metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=30)
        except grpc.RpcError as e:
            code = e.code()
            status = "400" if code == grpc.StatusCode.INVALID_ARGUMENT else f"grpc:{code.name}"
            return Outcome(case, status, e.details() or "")
        return Outcome(case, "ok", rejected=_rejected(case.signal, out, json_body=False))
    headers = {"Content-Type": case.ctype, **AUTH}
    if case.encoding:
        headers["Content-Encoding"] = case.encoding
    r = requests.post(f"{url}/v1/{case.signal}", data=case.body, headers=headers, timeout=60)
    if r.status_code != 200:
        try:
            message = r.json()["message"]
        except ValueError:
            from google.rpc import status_pb2
            message = status_pb2.Status.FromString(r.content).message
        return Outcome(case, str(r.status_code), message)
    return Outcome(case, "ok", rejected=_rejected(case.signal, r.content,
                                                  json_body=case.ctype == "application/json"))


def _rejected(signal: str, body: bytes, json_body: bool) -> int:
    if signal == "metrics":
        return 0
    if json_body:
        ps = json.loads(body).get("partialSuccess", {})
        return int(ps.get("rejectedSpans" if signal == "traces" else "rejectedLogRecords", 0))
    if signal == "traces":
        return ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans
    return ExportLogsServiceResponse.FromString(body).partial_success.rejected_log_records


def problems(o: Outcome) -> str | None:
    """What is wrong with one outcome (None when it is what the case allows)."""
    if o.status == "disconnect":
        return None
    allowed = o.case.expect.split("|")
    if o.status == "ok":
        want = [a for a in allowed if a.startswith("rejected=")]
        if want and f"rejected={o.rejected}" not in want:
            return f"rejected {o.rejected}, want {want}"
        if "ok" not in allowed and not want:
            return f"accepted, want {allowed}"
        return None
    if o.status not in allowed:
        return f"answered {o.status} {o.message[:200]!r}, want {allowed}"
    if len(o.message) > 300 or INTERNAL.search(o.message):
        return f"error message leaks internals or is long: {o.message[:300]!r}"
    return None


def test_fuzz_receiver_over_http_and_grpc(mlflow_server, mlflow_client, tmp_path):
    rnd = random.Random(SEED)
    noise = SynthEval(run_id=f"fuzz-noise-{SEED}", samples=2).build()
    ghost = SynthEval(run_id=f"fuzz-ghost-{SEED}", samples=3).build()  # results only
    valid = SynthEval(run_id=f"fuzz-valid-{SEED}", samples=3, epochs=2, scorers=("match", "judge"),
                      model_graded=("judge",)).build()
    deep = SynthEval(run_id=f"fuzz-deepjson-{SEED}", samples=2).build()
    # deep JSON in the task's JSON attributes (defect 1, writer side)
    deep_task = with_attrs(task_span(deep), {sc.INSPECT_TASK_ARGS: deep_json(5000),
                                             sc.INSPECT_TASK_MODEL_USAGE: "[" * 3000 + "]" * 3000},
                           new_id=False)
    deep_spans = [deep_task if s.span_id == deep_task.span_id else s for s in deep.spans()]

    data_dir = tmp_path / "spool"
    rp = start_receiver(mlflow_server.url, data_dir, EXPERIMENT, *ARGS,
                        env={"INSPECT_OTEL_RECEIVER_TOKEN": TOKEN})
    rp2 = None
    channel = grpc.insecure_channel(f"127.0.0.1:{rp.grpc_port}")
    try:
        # the valid eval's evaluation results first: orphans until its spans come (after the
        # restart below), so they expire meanwhile and must come back then
        assert rp.post("logs", logs_request(valid.logs()).SerializeToString(),
                       **AUTH).status_code == 200
        assert rp.post("traces", trace_request(deep_spans).SerializeToString(),
                       **AUTH).status_code == 200

        cases = generate(rnd, CASES, noise, ghost)
        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(lambda c: send(c, rp.url, rp.port, channel), cases))
        bad = [f"{o.case.name} ({o.case.transport}): {p}" for o in outcomes
               if (p := problems(o)) is not None]
        assert not bad, f"seed {SEED}: {len(bad)} of {len(cases)} cases wrong:\n" + "\n".join(
            bad[:30])
        seen = {o.status for o in outcomes}
        assert {"ok", "400", "415"} <= seen, seen  # the generator reaches every kind of answer
        assert sum(o.rejected for o in outcomes) > 0

        # still serving, drains, orphans expire, and nothing is left counted
        h = wait_for(lambda: (h := rp.health())["idle"] and h["orphaned"]["waiting"] == 0
                     and h["mlflow"]["writer_ok"] and h, 120, what="drained, orphans expired")
        assert h["orphaned"]["expired"] >= len(valid.logs())
        # what is kept: the one trace MLflow refuses for good (HTTP 422: the run trace, whose
        # task span carries the 5000-deep JSON), a dead letter with its cause, nothing else
        run_trace = deep_task.trace_id.hex()
        assert h["status"] == "degraded"
        assert (h["dead_letters"]["count"], h["dead_letters"]["retrying"]) == (1, 0), h
        (cause,) = h["dead_letters"]["causes"]
        assert cause["kind"] == "trace" and cause["examples"] == [run_trace], cause
        assert cause["cause"].startswith("HTTP 422 "), cause
        kept = [s for s in deep_spans if s.trace_id == deep_task.trace_id]
        resource = trace_request(kept).resource_spans[0].resource.SerializeToString()
        kept_bytes = (sum(len(s.SerializeToString()) for s in kept) + len(resource)
                      + len(run_trace) + len(cause["cause"]))
        # exact under overwrites and expiry: only the dead letter is left counted
        assert h["spool"]["pending_bytes"] == kept_bytes, h["spool"]
        expired = h["orphaned"]["expired"]

        # kill -9 and restart on the same spool: the recount agrees, expired stay expired
        rp.kill()
        channel.close()
        rp2 = start_receiver(mlflow_server.url, data_dir, EXPERIMENT, *ARGS,
                             env={"INSPECT_OTEL_RECEIVER_TOKEN": TOKEN})
        channel = grpc.insecure_channel(f"127.0.0.1:{rp2.grpc_port}")
        h = rp2.health()
        assert h["spool"]["pending_bytes"] == kept_bytes and h["orphaned"]["expired"] == expired
        assert h["dead_letters"]["count"] == 1  # kept across the restart

        # the valid eval's spans: half over gRPC, half as OTLP/JSON over HTTP
        spans = valid.spans()
        half = len(spans) // 2
        export = channel.unary_unary(GRPC_PATHS["traces"])
        assert export(trace_request(spans[:half]).SerializeToString(),
                      metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=30) == b""
        r = rp2.post("traces", to_otlp_json(trace_request(spans[half:])).encode(),
                     ctype="application/json", **AUTH)
        assert r.status_code == 200 and "partialSuccess" not in r.json(), r.text
        rp2.wait_idle(180)
        snap = wait_for(lambda: (s := snapshot(mlflow_client, EXPERIMENT, valid.run_id))
                        and complete(s, valid) and s, 60, what="valid eval complete in MLflow")
        check_eval(snap, valid, exact_history=False)
        h = rp2.health()
        assert h["orphaned"]["expired"] == expired - len(valid.logs())  # they came back

        # the task with deep JSON attributes was applied and finalized, not dropped
        exp = mlflow_client.get_experiment_by_name(EXPERIMENT)
        (task_run,) = runs(mlflow_client, exp.experiment_id, deep.run_id, _mlflow_names.ROLE_TASK)
        assert task_run.info.status == "FINISHED"
        assert task_run.data.tags[_mlflow_names.TAG_UNPARSED] == (f"{sc.INSPECT_TASK_ARGS},"
                                                       f"{sc.INSPECT_TASK_MODEL_USAGE}")
        assert task_run.data.params["task_args"].startswith('{"a":{"a":')
        assert task_run.data.params["model_usage"].startswith("[[[")
        assert task_run.data.metrics["samples/received"] == 2
        tables = snapshot(mlflow_client, EXPERIMENT, deep.run_id)["tasks"]["task_a"]["tables"]
        assert len(tables[_mlflow_names.SAMPLES_TABLE]) == 2 and tables[_mlflow_names.MODEL_USAGE_TABLE] == []

        for proc in (rp, rp2):
            log = proc.log()
            assert "Traceback" not in log, log[-3000:]
            assert "ingest failed" not in log
        assert "disconnected before sending the whole" in rp.log()
    finally:
        channel.close()
        rp.kill()
        if rp2 is not None:
            rp2.kill()
        time.sleep(0)
