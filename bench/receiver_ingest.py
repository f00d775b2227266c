"""Receiver ingest benchmark: OTLP in -> everything in MLflow, against MLflow's own /v1/traces.

One MLflow server (sqlite with one worker, or PostgreSQL with several), the same synthetic hook
output (tests/receiver/synth), measured in the same run and alternated over ``--rounds``:

  1. direct:   the spans POSTed straight to MLflow's /v1/traces, 512 per request (spans only: no
               runs, metrics, tables or assessments); the time until the last response (MLflow
               commits before answering).
  2. receiver: the spans + evaluation-result logs POSTed to ``--receivers`` receiver processes
               (``inspect-otel receiver``, own spools), split by trace id as the Collector's
               loadbalancing exporter does; the time until the traces are forwarded, and until
               *everything* is applied (runs, params, metrics, step metrics, tables, traces,
               assessments: every receiver idle and the task run's finalization complete).
  3. latency:  single samples sent one by one after the bulk load: time from the sample's last
               request to its trace AND all its assessments being queryable from MLflow.

Before anything is timed the server ingests one warm-up trace: MLflow's first requests pay for
lazy imports. This machine is offline, so MLflow's model price catalog is not fetched
(``MLFLOW_MODEL_CATALOG_URI=``): otherwise each MLflow worker stalls about 7 s on the first chat
span while the fetch times out (``--mlflow-catalog`` keeps that default, which is what the first
measurements in docs/benchmarks.md unknowingly timed).

Usage: .venv/bin/python bench/receiver_ingest.py [--samples 100] [--rounds 3] [--receivers 1]
           [--backend sqlite|postgres] [--workers 3] [--json PATH]
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
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

import requests  # noqa: E402

from tests.receiver.synth import SynthEval, trace_request  # noqa: E402
from tests.support.router import split  # noqa: E402

SCORERS = ("match", "judge")


def _wait(cond, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("benchmark condition not reached")


def _percentile(values: list[float], q: float) -> float:
    from inspect_otel.receiver._finalize import percentile

    return percentile(sorted(values), q)


def start_server(tmp: Path, backend: str, workers: int):
    from tests.support.mlflow_server import start_lean_mlflow

    if backend == "sqlite":
        return start_lean_mlflow(tmp / "mlflow"), None
    from tests.support.postgres import start_pg_mlflow, start_postgres

    pg = start_postgres(tmp / "pg" / "data")
    return start_pg_mlflow(tmp / "mlflow-pg", pg, workers=workers), pg


def post(http, url: str, sig: str, body: bytes, **headers: str) -> None:
    r = http.post(f"{url}/v1/{sig}", data=body, timeout=300,
                  headers={"Content-Type": "application/x-protobuf", **headers})
    r.raise_for_status()


def direct(server, client, http, samples: int, batch: int, tag: str) -> dict:
    exp = client.create_experiment(f"bench-direct-{tag}")
    ev = SynthEval(run_id=f"bench-direct-{tag}", samples=samples, scorers=SCORERS,
                   model_graded=("judge",)).build()
    spans = ev.spans()
    bodies = [trace_request(spans[i: i + batch]).SerializeToString()
              for i in range(0, len(spans), batch)]
    t0 = time.perf_counter()
    for body in bodies:
        post(http, server.url, "traces", body, **{"x-mlflow-experiment-id": exp})
    s = time.perf_counter() - t0
    return {"spans": len(spans), "seconds": s, "spans_per_s": len(spans) / s}


def _finalized(client, exp_name: str, ev: SynthEval) -> bool:
    from inspect_otel.receiver import _mlflow_names

    exp = client.get_experiment_by_name(exp_name)
    if exp is None:
        return False
    runs = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`inspect.eval_id` = '{ev.eval_id(ev.tasks[0])}' and tags.`{_mlflow_names.TAG_ROLE}` = 'task'"))
    want = f"{ev.samples * ev.epochs}/{ev.samples * ev.epochs * len(ev.scorers)}/"
    return bool(runs) and runs[0].data.tags.get(_mlflow_names.TAG_FINALIZED, "").startswith(want)


def through_receivers(server, client, http, tmp: Path, samples: int, batch: int, n: int,
                      tag: str) -> dict:
    from tests.support.receiver import start_receiver

    exp_name = f"bench-receiver-{tag}"
    rps = [start_receiver(server.url, tmp / f"receiver-{tag}-{i}", exp_name) for i in range(n)]
    try:
        _wait(lambda: all(rp.health()["mlflow"]["writer_ok"] for rp in rps), 120, 0.2)
        ev = SynthEval(run_id=exp_name, samples=samples, scorers=SCORERS,
                       model_graded=("judge",)).build()
        parts = [(sig, i, part) for sig, body in ev.batches(size=batch)
                 for i, part in split(sig, body, n).items()]
        t0 = time.perf_counter()
        for sig, i, part in parts:
            post(http, rps[i].url, sig, part)
        acked = time.perf_counter() - t0
        traces_s = None
        while True:
            hs = [rp.health() for rp in rps]
            if traces_s is None and all(h["spool"]["pending_spans"] == 0 for h in hs):
                traces_s = time.perf_counter() - t0
            # one receiver idle has applied everything; with several, the task's finalization
            # (by whichever receiver completes it) must show all samples and assessments too
            if all(h["idle"] and h["mlflow"]["writer_ok"] for h in hs) and \
                    (n == 1 or _finalized(client, exp_name, ev)):
                break
            time.sleep(0.05)
        idle_s = time.perf_counter() - t0
        n_spans = len(ev.spans())
        return {
            "receivers": n, "spans": n_spans, "results": len(ev.logs()), "ack_seconds": acked,
            "spans_acked_per_s": n_spans / acked, "traces_forwarded_seconds": traces_s,
            "spans_visible_per_s": n_spans / traces_s, "all_applied_seconds": idle_s,
            "spans_all_applied_per_s": n_spans / idle_s,
            "dead_letters": sum(h["dead_letters"]["count"] for h in hs),
            "rps": rps,
        }
    except BaseException:
        for rp in rps:
            rp.kill()
        raise


def latency(server, http, rps, count: int) -> list[float]:
    """Samples of one running eval, sent one at a time (its spans and results, as the hook sends
    a sample when it ends): time until the sample's trace and all its assessments are
    queryable. The first sample of the eval also creates its runs."""
    from mlflow.tracing.client import TracingClient

    tracing = TracingClient(server.url)
    ev = SynthEval(run_id="bench-latency", samples=count, scorers=SCORERS,
                   model_graded=("judge",)).build()
    by_trace: dict[bytes, list] = {}
    for item in ev.items:
        by_trace.setdefault(item.msg.trace_id, []).append(item)
    run_trace = ev.spans()[-1].trace_id  # run and task spans: not part of any sample
    delays = []
    for trace_id, items in by_trace.items():
        if trace_id == run_trace:
            continue
        one = SynthEval(items=items)
        tid = "tr-" + trace_id.hex()
        t0 = time.perf_counter()
        for sig, body in one.batches(size=1000):
            for j, part in split(sig, body, len(rps)).items():
                post(http, rps[j].url, sig, part)

        def ready() -> bool:
            try:
                return len(tracing.get_trace_info(tid).assessments or []) >= len(SCORERS)
            except Exception:  # noqa: BLE001 - not there yet
                return False

        _wait(ready, 120, 0.01)
        delays.append(time.perf_counter() - t0)
    return delays


def bench(args: argparse.Namespace) -> dict:
    from mlflow import MlflowClient

    if not args.mlflow_catalog:
        os.environ["MLFLOW_MODEL_CATALOG_URI"] = ""  # inherited by the MLflow server
    tmp = Path(tempfile.mkdtemp(prefix="inspect-otel-bench-"))
    server, pg = start_server(tmp, args.backend, args.workers)
    client = MlflowClient(server.url)
    http = requests.Session()
    out: dict = {"samples": args.samples, "batch_spans": args.batch, "receivers": args.receivers,
                 "backend": args.backend, "mlflow_workers": 1 if args.backend == "sqlite"
                 else args.workers, "mlflow_catalog": args.mlflow_catalog,
                 "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg(), "rounds": []}
    try:
        if not args.cold:
            warm = client.create_experiment("bench-warm-up")
            ev = SynthEval(run_id="bench-warm-up", samples=2, scorers=SCORERS).build()
            post(http, server.url, "traces", trace_request(ev.spans()).SerializeToString(),
                 **{"x-mlflow-experiment-id": warm})
        last_rps = None
        for r in range(args.rounds):
            d = direct(server, client, http, args.samples, args.batch, f"r{r}")
            rec = through_receivers(server, client, http, tmp, args.samples, args.batch,
                                    args.receivers, f"r{r}")
            rps = rec.pop("rps")
            if r < args.rounds - 1:
                for rp in rps:
                    rp.kill()
            else:
                last_rps = rps
            row = {"direct": d, "receiver": rec,
                   "ratio_visible_vs_direct": rec["spans_visible_per_s"] / d["spans_per_s"],
                   "ratio_all_applied_vs_direct": rec["spans_all_applied_per_s"] / d["spans_per_s"]}
            out["rounds"].append(row)
            print(f"round {r + 1}: direct {d['spans_per_s']:.0f} spans/s, receiver all applied "
                  f"{rec['spans_all_applied_per_s']:.0f} spans/s "
                  f"(ratio {row['ratio_all_applied_vs_direct']:.2f})", flush=True)
        delays = latency(server, http, last_rps, args.latency_samples)
        for rp in last_rps:
            rp.kill()
        out["latency_s"] = {"n": len(delays), "median": statistics.median(delays),
                            "p95": _percentile(delays, 0.95), "max": max(delays),
                            "first_sample": delays[0], "all": delays}
        out["load_avg_end"] = os.getloadavg()
    finally:
        server.stop()
        if pg is not None:
            pg.stop()
    ratios = [r["ratio_all_applied_vs_direct"] for r in out["rounds"]]
    out["ratio_all_applied_vs_direct_median"] = statistics.median(ratios)
    out["ratio_visible_vs_direct_median"] = statistics.median(
        r["ratio_visible_vs_direct"] for r in out["rounds"])
    # the fields bench/run.py reads (last round)
    last = out["rounds"][-1]
    out["direct"], out["receiver"] = last["direct"], last["receiver"]
    out["ratio_visible_vs_direct"] = last["ratio_visible_vs_direct"]
    out["ratio_all_applied_vs_direct"] = last["ratio_all_applied_vs_direct"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--batch", type=int, default=512, help="spans per OTLP request")
    ap.add_argument("--rounds", type=int, default=3, help="direct/receiver pairs, alternated")
    ap.add_argument("--receivers", type=int, default=1,
                    help="receiver processes behind a trace-id split (default 1)")
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--workers", type=int, default=2, help="MLflow workers (postgres only)")
    ap.add_argument("--latency-samples", type=int, default=20)
    ap.add_argument("--cold", action="store_true", help="no warm-up trace before the rounds")
    ap.add_argument("--mlflow-catalog", action="store_true",
                    help="let MLflow fetch its model price catalog (stalls offline)")
    ap.add_argument("--json", default=None, help="raw results path (default bench/results/...)")
    args = ap.parse_args()
    res = bench(args)
    print(f"\nreceiver ingest: {res['samples']} samples, {res['direct']['spans']} spans, "
          f"{res['receiver']['results']} evaluation results, {res['batch_spans']} spans/request, "
          f"{res['receivers']} receiver(s), MLflow on {res['backend']} "
          f"({res['mlflow_workers']} worker(s))")
    print(f"{'round':6} {'direct spans/s':>15} {'visible':>9} {'all applied':>12} "
          f"{'ratio visible':>14} {'ratio all':>10}")
    for i, r in enumerate(res["rounds"], 1):
        print(f"{i:<6} {r['direct']['spans_per_s']:>15.0f} "
              f"{r['receiver']['spans_visible_per_s']:>9.0f} "
              f"{r['receiver']['spans_all_applied_per_s']:>12.0f} "
              f"{r['ratio_visible_vs_direct']:>14.2f} {r['ratio_all_applied_vs_direct']:>10.2f}")
    print(f"median ratio everything applied / direct: {res['ratio_all_applied_vs_direct_median']:.2f}")
    lat = res["latency_s"]
    print(f"sample end -> trace + assessments queryable: median {lat['median'] * 1000:.0f} ms, "
          f"p95 {lat['p95'] * 1000:.0f} ms, max {lat['max'] * 1000:.0f} ms (n={lat['n']}; "
          f"the first sample, which also creates the eval's runs: "
          f"{lat['first_sample'] * 1000:.0f} ms)")
    write_results(args.json, "receiver_ingest", res)
    return 0


def write_results(path_arg: str | None, bench: str, data: dict) -> Path:
    """The raw results as JSON: ``path_arg``, or bench/results/<bench>-<time>.json."""
    path = Path(path_arg) if path_arg else (
        ROOT / "bench" / "results" / f"{bench}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    print(f"raw results: {path}")
    return path


if __name__ == "__main__":
    sys.exit(main())
