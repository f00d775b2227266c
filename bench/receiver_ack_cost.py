"""What the receiver's input validation costs on the acknowledgement path (decode + durable spool,
no MLflow), against a baseline tree measured in the same run.

The same synthetic hook output (tests/receiver/synth: 200 samples, 1,402 spans, 400 evaluation
results, 512 spans or records per request) is decoded and ingested into a fresh spool, as
OTLP/protobuf and as OTLP/JSON, by this checkout's receiver and by the receiver of a git ref
(default ``main``), each run in a fresh process, alternating, several rounds. Medians, ratios
new/baseline, raw JSON to bench/results/.

Usage: .venv/bin/python bench/receiver_ack_cost.py [--baseline-ref main] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in a child process whose PYTHONPATH puts the tree under test first.
CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
from inspect_otel.receiver import _decode as dec
from inspect_otel.receiver._spool import Spool
from tests.receiver.synth import SynthEval, logs_request, to_otlp_json, trace_request

ev = SynthEval(run_id="bench-ack", samples=200, scorers=("match", "judge")).build()
spans, logs = ev.spans(), ev.logs()
B = 512
requests = {
    "protobuf": [("traces", trace_request(spans[i:i + B]).SerializeToString())
                 for i in range(0, len(spans), B)]
                + [("logs", logs_request(logs[i:i + B]).SerializeToString())
                   for i in range(0, len(logs), B)],
    "json": [("traces", to_otlp_json(trace_request(spans[i:i + B])).encode())
             for i in range(0, len(spans), B)],
}
ctype = {"protobuf": "application/x-protobuf", "json": "application/json"}
out = {"spans": len(spans), "results": len(logs)}
for enc, reqs in requests.items():
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "spool.db")
        t0, c0 = time.perf_counter(), time.process_time()
        decode_s = 0.0
        for signal, body in reqs:
            d0 = time.perf_counter()
            msg, _ = dec.decode(signal, body, ctype[enc], None, 64 << 20)
            decode_s += time.perf_counter() - d0
            (spool.ingest_traces if signal == "traces" else spool.ingest_logs)(msg)
        out[enc] = {"ack_s": time.perf_counter() - t0, "ack_cpu_s": time.process_time() - c0,
                    "decode_s": decode_s}
        spool.close()
print(json.dumps(out))
"""


def export_tree(ref: str, dest: Path) -> Path:
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def measure(src: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=str(ROOT), check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-ref", default="main")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None, help="raw results path (default bench/results/)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inspect-otel-ack-") as tmp:
        trees = {"baseline": export_tree(args.baseline_ref, Path(tmp)), "this tree": ROOT / "src"}
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for i in range(args.rounds):
            order = list(trees) if i % 2 == 0 else list(reversed(trees))
            for name in order:
                runs[name].append(measure(trees[name]))
    spans = runs["this tree"][0]["spans"]
    summary: dict[str, dict] = {}
    for name, rs in runs.items():
        summary[name] = {}
        for enc in ("protobuf", "json"):
            ack = statistics.median(r[enc]["ack_s"] for r in rs)
            cpu = statistics.median(r[enc]["ack_cpu_s"] for r in rs)
            dec_s = statistics.median(r[enc]["decode_s"] for r in rs)
            summary[name][enc] = {"ack_s": ack, "ack_cpu_s": cpu, "decode_s": dec_s,
                                  "ack_spans_per_s": spans / ack,
                                  "ack_range_s": [min(r[enc]["ack_s"] for r in rs),
                                                  max(r[enc]["ack_s"] for r in rs)]}
    ratios = {f"{enc} {what}": summary["this tree"][enc][what] / summary["baseline"][enc][what]
              for enc in ("protobuf", "json") for what in ("ack_s", "ack_cpu_s")}
    result = {"baseline_ref": args.baseline_ref, "rounds": args.rounds, "spans": spans,
              "results": runs["this tree"][0]["results"], "summary": summary,
              "ratio_this_vs_baseline": ratios, "runs": runs,
              "load_average": os.getloadavg()}
    path = Path(args.json) if args.json else (
        ROOT / "bench" / "results" / f"receiver_ack_cost-{time.strftime('%Y%m%d-%H%M%S')}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    for enc in ("protobuf", "json"):
        b, t = summary["baseline"][enc], summary["this tree"][enc]
        print(f"{enc:8s} ack wall: baseline {b['ack_s']:.3f}s ({b['ack_spans_per_s']:.0f} spans/s), "
              f"this tree {t['ack_s']:.3f}s ({t['ack_spans_per_s']:.0f} spans/s), "
              f"{ratios[enc + ' ack_s']:.2f}x; CPU {b['ack_cpu_s']:.3f}s -> {t['ack_cpu_s']:.3f}s "
              f"({ratios[enc + ' ack_cpu_s']:.2f}x); decode {b['decode_s']:.3f}s -> "
              f"{t['decode_s']:.3f}s")
    print(f"raw: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
