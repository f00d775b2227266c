"""What MLflow itself spends on each kind of write the receiver makes: server CPU seconds (all of
the server's processes) and wall time, on a fresh MLflow server, for the synthetic hook output of
bench/receiver_ingest.py (100 samples: 702 spans, 200 evaluation results).

  spans, 512 per request   MLflow's own /v1/traces as the hook would send it (the ingest baseline)
  spans, one request       the same spans in one request (the receiver sends up to 1,000)
  assessments              one create_assessment per result (MLflow has no batch call for them)
  log_batch                one small log_batch (runs, params, metrics, tags go this way)

The receiver cannot make "everything applied" cheaper for MLflow than the sum of these: that is
the floor its ratio against the spans-only baseline is measured against.

Usage: .venv/bin/python bench/mlflow_costs.py [--rounds 2] [--backend sqlite|postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import requests  # noqa: E402

from bench.receiver_ingest import start_server  # noqa: E402
from tests.receiver.synth import SynthEval, trace_request  # noqa: E402


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) of every process in the process group ``pgid``."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    os.environ["MLFLOW_MODEL_CATALOG_URI"] = ""  # offline machine (see bench/receiver_ingest.py)
    from mlflow import MlflowClient

    from inspect_otel.receiver import _evaluations

    tmp = Path(tempfile.mkdtemp(prefix="inspect-otel-costs-"))
    server, pg = start_server(tmp, args.backend, args.workers)
    pgid = server.proc.pid
    client = MlflowClient(server.url)
    http = requests.Session()
    rows: list[dict] = []

    def measure(name: str, fn) -> None:
        c0, t0 = group_cpu_s(pgid), time.perf_counter()
        n = fn()
        rows.append({"what": name, "requests": n, "server_cpu_s": group_cpu_s(pgid) - c0,
                     "wall_s": time.perf_counter() - t0})

    def post_spans(exp: str, spans, size: int) -> int:
        for i in range(0, len(spans), size):
            http.post(f"{server.url}/v1/traces", timeout=300,
                      data=trace_request(spans[i: i + size]).SerializeToString(),
                      headers={"Content-Type": "application/x-protobuf",
                               "x-mlflow-experiment-id": exp}).raise_for_status()
        return (len(spans) + size - 1) // size

    try:
        warm = client.create_experiment("costs-warm-up")
        post_spans(warm, SynthEval(run_id="costs-warm-up", samples=2).build().spans(), 1000)
        for r in range(args.rounds):
            for name, size in (("spans, 512 per request", 512), ("spans, one request", 10**6)):
                exp = client.create_experiment(f"costs-{r}-{size}")
                ev = SynthEval(run_id=f"costs-{r}-{size}", samples=100,
                               scorers=("match", "judge")).build()
                measure(name, lambda: post_spans(exp, ev.spans(), size))
            results = [(s.trace_id.hex(), n) for s in ev.spans() if not s.parent_span_id
                       for n in ("match", "judge")][:200]

            def assessments() -> int:
                for trace_hex, name in results:
                    tid = "tr-" + trace_hex
                    body = {"assessment": {
                        "assessment_id": _evaluations.assessment_id(trace_hex, name, ""),
                        "assessment_name": name, "trace_id": tid,
                        "source": {"source_type": "CODE", "source_id": name},
                        "feedback": {"value": 1.0}, "create_time": "2026-01-01T00:00:00Z",
                        "last_update_time": "2026-01-01T00:00:00Z"}}
                    http.post(f"{server.url}/api/3.0/mlflow/traces/{tid}/assessments",
                              json=body, timeout=60).raise_for_status()
                return len(results)

            measure("assessments", assessments)
            run_id = client.create_run(exp).info.run_id

            def log_batches() -> int:
                for i in range(50):
                    http.post(f"{server.url}/api/2.0/mlflow/runs/log-batch", timeout=60, json={
                        "run_id": run_id, "metrics": [
                            {"key": "m", "value": 1.0, "timestamp": i, "step": i}]}
                              ).raise_for_status()
                return 50

            measure("log_batch", log_batches)
    finally:
        server.stop()
        if pg is not None:
            pg.stop()
    print(f"MLflow on {args.backend}: server CPU and wall time per kind of write")
    print(f"{'write':26} {'requests':>8} {'server CPU s':>13} {'ms CPU/request':>15} {'wall s':>7}")
    for row in rows:
        print(f"{row['what']:26} {row['requests']:>8} {row['server_cpu_s']:>13.2f} "
              f"{row['server_cpu_s'] / row['requests'] * 1000:>15.1f} {row['wall_s']:>7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"backend": args.backend, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
