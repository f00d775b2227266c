"""Scout import benchmark: OTLP file and MLflow traces -> a Scout transcript database.

One run, one fresh MLflow server (sqlite) and receiver:
  1. produce: bench/workload.py's agent eval (5 model calls, 4 tool calls, 1 score per sample)
     with content capture, exported by the live hook through the OpenTelemetry SDK into an OTLP
     JSON-lines file (the Collector file exporter's format) and through the receiver into MLflow.
  2. file:    `otlp_transcripts` into a new database, in a fresh process: wall time, transcripts/s,
     RSS after imports, RSS at 25/50/75/100% of the transcripts, and peak RSS. Then the reader
     alone (transcripts built and dropped): bounded memory means flat RSS across the file,
     whatever its size. (Scout's `insert` itself buffers up to ~100 MB of rows per parquet file.)
  3. mlflow:  a plain `mlflow.search_traces` of the same traces (all pages, spans included; the
     baseline) and `mlflow_transcripts` into a new database, each in a fresh process, alternated
     (baseline, import, baseline, import); traces/s of each and their ratio.

Usage: .venv/bin/python bench/scout_import.py [--samples 2000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

EXPERIMENT = "scout-bench"

# Measurement bodies, each run in a fresh interpreter (imports excluded from the timings).
# argv: file, database ("" = the reader alone: transcripts built and dropped), transcripts.
_FILE_IMPORT = r"""
import asyncio, json, resource, sys, time
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
from inspect_scout import transcripts_db
from inspect_scout._display._display import init_display_type
from inspect_otel.scout import ImportReport, otlp_transcripts
init_display_type("none")
path, db, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
marks = {max(1, round(total * q / 4)): q for q in (1, 2, 3, 4)}
points, report = [], ImportReport()
before = rss()
async def counted():
    n = 0
    async for t in otlp_transcripts([path], report=report):
        n += 1
        if n in marks:
            points.append({"transcripts": n, "rss": rss()})
        yield t
async def main():
    if not db:
        async for _ in counted():
            pass
        return
    async with transcripts_db(db) as tdb:
        await tdb.insert(counted())
t0 = time.perf_counter()
asyncio.run(main())
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "transcripts": report.transcripts,
                  "problems": len(report.problems), "rss_after_imports": before,
                  "rss_points": points,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

_MLFLOW_PLAIN = r"""
import json, sys, time
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
exp = mlflow.get_experiment_by_name(sys.argv[2]).experiment_id
t0 = time.perf_counter()
traces = mlflow.search_traces(locations=[exp], return_type="list",
                              filter_string="tags.`inspect.span.kind` = 'sample'")
spans = sum(len(t.data.spans) for t in traces)
print(json.dumps({"seconds": time.perf_counter() - t0, "traces": len(traces), "spans": spans}))
"""

_MLFLOW_IMPORT = r"""
import asyncio, json, sys, time
from inspect_scout import transcripts_db
from inspect_scout._display._display import init_display_type
from inspect_otel.scout import ImportReport, mlflow_transcripts
init_display_type("none")
report = ImportReport()
async def main():
    async with transcripts_db(sys.argv[3]) as tdb:
        await tdb.insert(mlflow_transcripts(sys.argv[2], sys.argv[1], report=report))
t0 = time.perf_counter()
asyncio.run(main())
print(json.dumps({"seconds": time.perf_counter() - t0, "traces": report.transcripts}))
"""


def _python(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(samples: int, runs: int, keep: bool = False) -> dict:
    from tests.support.mlflow_server import start_lean_mlflow
    from tests.support.receiver import start_receiver
    from tests.support.wait import wait_for

    tmp = Path(tempfile.mkdtemp(prefix="inspect-otel-scout-bench-"))
    server = start_lean_mlflow(tmp / "mlflow")
    receiver = None
    try:
        receiver = start_receiver(server.url, tmp / "receiver", EXPERIMENT, settle=1.0)
        jsonl = tmp / "otlp.jsonl"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OTEL_", "INSPECT_OTEL_", "MLFLOW_"))}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tests.scout.produce", "--log-dir",
                        str(tmp / "logs"), "--jsonl", str(jsonl), "--endpoint", receiver.url,
                        "--workload", str(samples)], cwd=ROOT, env=env, check=True)
        produced = time.perf_counter() - t0
        receiver.wait_idle(timeout=3600)
        from mlflow import MlflowClient

        client = MlflowClient(server.url)
        experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id

        def all_traces() -> bool:
            page = client.search_traces(locations=[experiment], max_results=1,
                                        filter_string="tags.`inspect.span.kind` = 'sample'",
                                        order_by=["timestamp_ms DESC"], include_spans=False)
            return len(page) == 1 and _count(client, experiment) >= samples
        wait_for(all_traces, 600, what="all sample traces in MLflow", interval=2)

        file_runs = [_python(_FILE_IMPORT, str(jsonl), str(tmp / f"db-file-{n}"), str(samples))
                     for n in range(runs)]
        read_only = _python(_FILE_IMPORT, str(jsonl), "", str(samples))
        plain, ours = [], []
        for n in range(runs):
            plain.append(_python(_MLFLOW_PLAIN, server.url, EXPERIMENT))
            ours.append(_python(_MLFLOW_IMPORT, server.url, EXPERIMENT,
                                str(tmp / f"db-mlflow-{n}")))
        plain_rate = statistics.median(r["traces"] / r["seconds"] for r in plain)
        ours_rate = statistics.median(r["traces"] / r["seconds"] for r in ours)
        return {
            "samples": samples,
            "produce_seconds": round(produced, 1),
            "file_bytes": jsonl.stat().st_size,
            "file_lines": sum(1 for _ in open(jsonl, "rb")),
            "file_import": file_runs,
            "file_read_only": read_only,
            "file_transcripts_per_s": statistics.median(
                r["transcripts"] / r["seconds"] for r in file_runs),
            "mlflow_plain_search_traces": plain,
            "mlflow_import": ours,
            "mlflow_plain_traces_per_s": plain_rate,
            "mlflow_import_traces_per_s": ours_rate,
            "mlflow_import_vs_plain": ours_rate / plain_rate,
        }
    finally:
        if receiver is not None:
            receiver.kill()
        server.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _count(client, experiment: str) -> int:
    total, token = 0, None
    while True:
        page = client.search_traces(locations=[experiment], max_results=500, page_token=token,
                                    filter_string="tags.`inspect.span.kind` = 'sample'",
                                    include_spans=False)
        total += len(page)
        token = page.token
        if not token:
            return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    result = bench(args.samples, args.runs, args.keep)
    mb = 1 << 20
    for r in result["file_import"]:
        print(f"file: {r['transcripts']} transcripts in {r['seconds']:.1f} s "
              f"({r['transcripts'] / r['seconds']:.0f}/s); RSS after imports "
              f"{r['rss_after_imports'] / mb:.0f} MB, at 25/50/75/100%: "
              + ", ".join(f"{p['rss'] / mb:.0f}" for p in r["rss_points"])
              + f" MB, peak {r['peak_rss'] / mb:.0f} MB")
    r = result["file_read_only"]
    print(f"reader alone: {r['transcripts']} transcripts in {r['seconds']:.1f} s; RSS after "
          f"imports {r['rss_after_imports'] / mb:.0f} MB, at 25/50/75/100%: "
          + ", ".join(f"{p['rss'] / mb:.0f}" for p in r["rss_points"]) + " MB")
    print(f"file size {result['file_bytes'] / mb:.1f} MB, {result['file_lines']} lines")
    print(f"mlflow: plain search_traces {result['mlflow_plain_traces_per_s']:.0f} traces/s, "
          f"import {result['mlflow_import_traces_per_s']:.0f} traces/s "
          f"({result['mlflow_import_vs_plain']:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
