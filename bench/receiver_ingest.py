"""Receiver ingest benchmark: OTLP in -> visible in MLflow, against MLflow's own /v1/traces.

One run, one fresh MLflow server (sqlite), the same synthetic hook output (tests/receiver/synth):
  1. direct:   the spans POSTed straight to MLflow's /v1/traces (spans only: no runs, metrics,
               tables or assessments); the time until the last response (MLflow commits before
               answering).
  2. receiver: the spans + evaluation-result logs POSTed to the receiver; the time until the
               receiver is idle (everything in MLflow: runs, params, metrics, step metrics,
               tables, traces, assessments), and until all traces are queryable.
  3. latency:  single samples sent after the bulk load: time from the sample's last request to
               its trace AND its assessments being queryable from MLflow.

Usage: .venv/bin/python bench/receiver_ingest.py [--samples 200] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

import requests  # noqa: E402

from tests.receiver.synth import SynthEval, trace_request  # noqa: E402
from tests.support.mlflow_server import start_mlflow_server  # noqa: E402


def _wait(cond, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("benchmark condition not reached")


def _span_batches(ev: SynthEval, size: int) -> list[bytes]:
    spans = ev.spans()
    return [trace_request(spans[i: i + size]).SerializeToString() for i in range(0, len(spans), size)]


def bench(samples: int, batch: int, latency_samples: int) -> dict:
    from mlflow import MlflowClient

    from inspect_otel.receiver import Receiver, ReceiverConfig

    tmp = Path(tempfile.mkdtemp(prefix="inspect-otel-bench-"))
    server = start_mlflow_server(tmp / "mlflow")
    client = MlflowClient(server.url)
    out: dict = {"samples": samples, "batch_spans": batch, "cpu_count": os.cpu_count(),
                 "load_avg": os.getloadavg()}
    receiver = None
    try:
        # --- 1. MLflow's own OTLP ingest -----------------------------------------------------
        direct_exp = client.create_experiment("bench-direct")
        ev_direct = SynthEval(run_id="bench-direct", samples=samples, scorers=("match", "judge"),
                              model_graded=("judge",)).build()
        bodies = _span_batches(ev_direct, batch)
        n_spans = len(ev_direct.spans())
        http = requests.Session()
        t0 = time.perf_counter()
        for body in bodies:
            r = http.post(f"{server.url}/v1/traces", data=body, timeout=120, headers={
                "Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": direct_exp})
            r.raise_for_status()
        direct_s = time.perf_counter() - t0
        out["direct"] = {"spans": n_spans, "seconds": direct_s, "spans_per_s": n_spans / direct_s}

        # --- 2. through the receiver ---------------------------------------------------------
        receiver = Receiver(ReceiverConfig(
            mlflow_uri=server.url, experiment_name="bench-receiver", port=0, grpc_port=None,
            data_dir=tmp / "receiver", settle_s=2.0)).start()
        url = f"http://127.0.0.1:{receiver.http_port}"
        ev = SynthEval(run_id="bench-receiver", samples=samples, scorers=("match", "judge"),
                       model_graded=("judge",)).build()
        requests_ = ev.batches(size=batch)
        t0 = time.perf_counter()
        for sig, body in requests_:
            http.post(f"{url}/v1/{sig}", data=body, timeout=120,
                      headers={"Content-Type": "application/x-protobuf"}).raise_for_status()
        acked_s = time.perf_counter() - t0
        exp_id = _wait(lambda: client.get_experiment_by_name("bench-receiver"), 120).experiment_id
        traces_s = None
        while True:
            h = receiver.health()
            if traces_s is None and h["spool"]["pending_spans"] == 0:
                traces_s = time.perf_counter() - t0
            if h["idle"] and h["mlflow"]["writer_ok"]:
                break
            time.sleep(0.05)
        idle_s = time.perf_counter() - t0
        n_traces = len(client.search_traces(locations=[exp_id], max_results=samples + 10))
        assert n_traces == samples + 1, n_traces  # samples + the run trace
        out["receiver"] = {
            "spans": len(ev.spans()), "results": len(ev.logs()), "ack_seconds": acked_s,
            "spans_acked_per_s": len(ev.spans()) / acked_s,
            "traces_forwarded_seconds": traces_s, "spans_visible_per_s": len(ev.spans()) / traces_s,
            "all_applied_seconds": idle_s, "spans_all_applied_per_s": len(ev.spans()) / idle_s,
        }
        out["ratio_visible_vs_direct"] = out["receiver"]["spans_visible_per_s"] / out["direct"]["spans_per_s"]
        out["ratio_all_applied_vs_direct"] = (out["receiver"]["spans_all_applied_per_s"]
                                              / out["direct"]["spans_per_s"])

        # --- 3. sample end -> trace + assessments queryable ----------------------------------
        from mlflow.tracing.client import TracingClient

        tracing = TracingClient(server.url)
        delays = []
        for i in range(latency_samples):
            one = SynthEval(run_id=f"bench-latency-{i}", samples=1, scorers=("match",)).build()
            tid = "tr-" + one.spans()[0].trace_id.hex()
            t0 = time.perf_counter()
            for sig, body in one.batches(size=1000):
                http.post(f"{url}/v1/{sig}", data=body, timeout=60,
                          headers={"Content-Type": "application/x-protobuf"}).raise_for_status()

            def ready() -> bool:
                try:
                    return bool(tracing.get_trace_info(tid).assessments)
                except Exception:  # noqa: BLE001 - not there yet
                    return False

            _wait(ready, 120, 0.02)
            delays.append(time.perf_counter() - t0)
        out["latency_s"] = {"n": len(delays), "median": statistics.median(delays),
                            "max": max(delays), "all": delays}
    finally:
        if receiver is not None:
            receiver.stop()
        server.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--batch", type=int, default=512, help="spans per OTLP request")
    ap.add_argument("--latency-samples", type=int, default=5)
    ap.add_argument("--json", default=None, help="raw results path (default bench/results/...)")
    args = ap.parse_args()
    res = bench(args.samples, args.batch, args.latency_samples)
    d, r = res["direct"], res["receiver"]
    rows = [
        ("MLflow /v1/traces direct (spans only)", f"{d['spans_per_s']:.0f}", f"{d['seconds']:.2f}"),
        ("receiver: acknowledged (durable spool)", f"{r['spans_acked_per_s']:.0f}",
         f"{r['ack_seconds']:.2f}"),
        ("receiver: traces visible in MLflow", f"{r['spans_visible_per_s']:.0f}",
         f"{r['traces_forwarded_seconds']:.2f}"),
        ("receiver: everything applied", f"{r['spans_all_applied_per_s']:.0f}",
         f"{r['all_applied_seconds']:.2f}"),
    ]
    print(f"\nreceiver ingest: {res['samples']} samples, {d['spans']} spans, "
          f"{r['results']} evaluation results, {res['batch_spans']} spans/request")
    print(f"{'path':42} {'spans/s':>9} {'seconds':>9}")
    for name, rate, secs in rows:
        print(f"{name:42} {rate:>9} {secs:>9}")
    print(f"ratio receiver visible / direct:        {res['ratio_visible_vs_direct']:.2f}")
    print(f"ratio receiver all applied / direct:    {res['ratio_all_applied_vs_direct']:.2f}")
    lat = res["latency_s"]
    print(f"sample end -> trace + assessments queryable: median {lat['median']*1000:.0f} ms, "
          f"max {lat['max']*1000:.0f} ms (n={lat['n']})")
    path = Path(args.json) if args.json else (
        ROOT / "bench" / "results" / f"receiver_ingest-{time.strftime('%Y%m%d-%H%M%S')}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    print(f"raw results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
