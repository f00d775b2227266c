"""Live export latency: how soon after a span ends is it at the OTLP endpoint, and in MLflow?

A paced offline eval (tests/support/evals.py ``run_slow``: each sample's agent makes 3 tool calls
that sleep ``--step`` seconds, 4 samples at once, one retried, one crashing, one stopped by its
time limit) exports with the hook's defaults to:

- ``endpoint``: an OTLP/HTTP endpoint that stamps each request's arrival (tests/support/otlp_sink);
  per span: arrival - span end (the span's own end timestamp, Inspect's clock = this machine's);
- ``mlflow``: a receiver process in front of a real MLflow server (sqlite, one worker). A poller
  reads the traces of the experiment every ``--poll`` seconds (with their spans, IN_PROGRESS
  ones included); per span: first seen in MLflow - span end (resolution: the poll interval).

Only spans that end while their sample runs count: not the root, nor the top-level spans
(solvers, scorers) that an attempt which may be retried keeps until it ends. Standard OTEL_BSP_* variables in
the environment still apply.

Usage: .venv/bin/python bench/live_latency.py [--step 1.0] [--repeats 2] [--targets endpoint,mlflow]
           [--json PATH]
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
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

from bench.receiver_eval import ExperimentPoller  # noqa: E402
from bench.receiver_ingest import _percentile  # noqa: E402


def _clean_env(endpoint: str) -> dict[str, str | None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith(("OTEL_", "INSPECT_OTEL_"))}
    for k in saved:
        del os.environ[k]
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    os.environ["OTEL_METRICS_EXPORTER"] = "none"
    for k in ("OTEL_BSP_SCHEDULE_DELAY", "OTEL_BLRP_SCHEDULE_DELAY"):  # an explicit setting wins
        if k in saved:
            os.environ[k] = saved[k]
    return saved


def _restore(saved: dict[str, str | None]) -> None:
    for k in [k for k in os.environ if k.startswith(("OTEL_", "INSPECT_OTEL_"))]:
        del os.environ[k]
    os.environ.update({k: v for k, v in saved.items() if v is not None})


def _live_spans(log, spans):
    """(span id, end ns) of the spans that end while their sample runs."""
    from inspect_otel import ids
    from inspect_otel.mapping._common import to_ns

    ends = {ids.trace_id_hex(ids.sample_trace_id(s.uuid)): to_ns(s.completed_at)
            for s in log.samples}
    roots = {ids.span_id_hex(ids.sample_root_span_id(s.uuid)) for s in log.samples}
    # not the root, nor the top-level spans an attempt that may be retried keeps to its end
    return [(sid, end) for trace, sid, parent, end in spans
            if parent and parent not in roots and trace in ends
            and end < ends[trace] - 100_000_000]


def run_endpoint(tmp: Path, step: float) -> list[float]:
    from tests.support.evals import run_slow
    from tests.support.otlp_sink import HttpSink

    server = HttpSink()
    saved = _clean_env(server.endpoint)
    try:
        log = run_slow(tmp, seconds=step)
    finally:
        _restore(saved)
    time.sleep(1.0)
    server.stop()
    arrived = {s.span_id: s.arrived_ns for s in server.sink.spans}
    rows = [(s.trace_id, s.span_id, s.parent_span_id, s.end_ns) for s in server.sink.spans]
    return [(arrived[sid] - end) / 1e9 for sid, end in _live_spans(log, rows)]


class SpanPoller(ExperimentPoller):
    """Every ``interval``: the experiment's traces (IN_PROGRESS included) and their spans; when
    each span id was first seen."""

    def __init__(self, url: str, experiment: str, interval: float):
        super().__init__(url, experiment, interval)
        self.seen: dict[str, int] = {}
        self.start()

    def poll(self, experiment_id: str) -> None:
        for t in self.client.search_traces(locations=[experiment_id], max_results=100):
            if t.info.state.value == "IN_PROGRESS" or any(
                    s.span_id not in self.seen for s in t.data.spans):
                now = time.time_ns()
                for s in self.client.get_trace(t.info.trace_id).data.spans:
                    self.seen.setdefault(s.span_id, now)


def run_mlflow(tmp: Path, step: float, server_url: str, tag: str, poll: float) -> list[float]:
    from mlflow import MlflowClient

    from tests.support.evals import run_slow
    from tests.support.receiver import start_receiver
    from tests.support.wait import wait_for

    experiment = f"bench-live-{tag}"
    rp = start_receiver(server_url, tmp / "receiver", experiment)
    try:
        wait_for(lambda: rp.health()["mlflow"]["writer_ok"], 120, what="receiver connected",
                 interval=0.1)
        MlflowClient(server_url).search_experiments(max_results=1)
        poller = SpanPoller(server_url, experiment, poll)
        saved = _clean_env(rp.url)
        try:
            log = run_slow(tmp / "logs", seconds=step)
        finally:
            _restore(saved)
        rp.wait_idle(120)
        time.sleep(2 * poll)
        poller.stop()
        client = MlflowClient(server_url)
        rows = []
        from inspect_otel import ids

        for s in log.samples:
            trace = ids.trace_id_hex(ids.sample_trace_id(s.uuid))
            for span in client.get_trace("tr-" + trace).data.spans:
                rows.append((trace, span.span_id, span.parent_id, span.end_time_ns))
        return [(poller.seen[sid] - end) / 1e9 for sid, end in _live_spans(log, rows)
                if sid in poller.seen]
    finally:
        rp.kill()


def summary(values: list[float]) -> dict[str, float]:
    return {"spans": len(values), "p50": round(statistics.median(values), 3),
            "p95": round(_percentile(values, 0.95), 3), "max": round(max(values), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--step", type=float, default=1.0, help="seconds each tool call sleeps")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--targets", default="endpoint,mlflow")
    ap.add_argument("--poll", type=float, default=0.25, help="MLflow poll interval (s)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    targets = args.targets.split(",")
    out: dict[str, object] = {"step_s": args.step, "repeats": args.repeats,
                              "load_avg": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if "endpoint" in targets:
            values: list[float] = []
            for i in range(args.repeats):
                values += run_endpoint(tmp / f"endpoint-{i}", args.step)
            out["span_end_to_endpoint_s"] = summary(values)
            print("span end -> endpoint:", out["span_end_to_endpoint_s"], flush=True)
        if "mlflow" in targets:
            from tests.support.mlflow_server import start_lean_mlflow

            server = start_lean_mlflow(tmp / "mlflow")
            try:
                values = []
                for i in range(args.repeats):
                    values += run_mlflow(tmp / f"mlflow-{i}", args.step, server.url, str(i),
                                         args.poll)
                out["span_end_to_mlflow_s"] = summary(values)
                print("span end -> visible in MLflow:", out["span_end_to_mlflow_s"], flush=True)
            finally:
                server.stop()
    out["load_avg_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
