"""A real eval through the receiver(s), as a new user runs it: how soon is it in MLflow?

The eval: the calculator agent of tests/support/evals.py with 10 samples x 2 epochs, 4 scorers
(match, includes, exact, a model-graded judge), tool calls (one failing per sample), a sandbox
exec, a retried sample and one that always errors (2 erroring sample x epochs), offline
(``mockllm/model``). The hook exports over OTLP/HTTP with its defaults (the SDK's batch span
processor flushes every 5 s, and at the end of the run; ``--export-delay-ms`` sets the standard
``OTEL_BSP_SCHEDULE_DELAY``/``OTEL_BLRP_SCHEDULE_DELAY``) to ``--receivers`` receiver processes
behind a trace-id router (tests/support/router.py, also with one receiver: it timestamps when each
trace's data reached a receiver). A poller reads MLflow's traces every 200 ms (more often, it
becomes a load of its own on a one-worker MLflow).

Measured (seconds):
  eval end -> last trace visible, -> every sample trace with all its assessments, -> the task
  run finalized with all samples and scores and both runs finished, -> everything (the eval log
  stored as the task run's artifact too);
  per sample: its end -> its trace and assessments queryable (p50/p95), and the receiver's part:
  the arrival of its last piece at a receiver -> queryable (the hook's batching is the rest).

``--content`` turns content capture on and ``--answer-kb 300`` makes one answer 300 kB.

Usage: .venv/bin/python bench/receiver_eval.py [--receivers 1] [--backend sqlite|postgres]
           [--repeats 2] [--content] [--answer-kb 300] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

from bench.receiver_ingest import _percentile, start_server, write_results  # noqa: E402
from tests.support.router import OtlpRouter, owner  # noqa: E402

SAMPLES = 10
EPOCHS = 2


def eval_task(pace_s: float = 0.0):
    """``pace_s`` > 0: sample k of 10, epoch e, first waits pace_s * k / 10 * e seconds (as a real
    model's latency would), so samples end spread over the eval instead of within a second."""
    import asyncio

    from inspect_ai import Task, task
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import exact, includes, match
    from inspect_ai.solver import generate, solver, use_tools

    from tests.support import evals

    rows = [(f"s{i}", f"add {i} {i + 2}", str(2 * i + 2)) for i in range(SAMPLES - 2)]
    rows += [("boom", "add 1 1", "2"), ("flaky", "add 4 4", "8")]
    order = {sample_id: k for k, (sample_id, _, _) in enumerate(rows, start=1)}

    @solver
    def pace():
        async def solve(state, generate):
            await asyncio.sleep(pace_s * order[state.sample_id] / len(rows) * state.epoch)
            return state
        return solve

    @task
    def calculator10():
        return Task(
            dataset=[Sample(id=i, input=x, target=t) for i, x, t in rows],
            solver=[pace(), use_tools(evals.add(), evals.divide()), evals.chaos(), generate()],
            scorer=[match(), includes(), exact(), evals.judge()],
            sandbox="local",
        )

    return calculator10()


class TimingRouter(OtlpRouter):
    """The router, noting when each trace id's data last reached a receiver."""

    def __init__(self, backends: list[str]):
        super().__init__(backends)
        self.arrived: dict[str, float] = {}

    def forward(self, signal: str, body: bytes) -> bool:
        ok = super().forward(signal, body)
        now = time.monotonic()
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        ids: set[bytes] = set()
        if signal == "traces":
            req = ExportTraceServiceRequest.FromString(body)
            ids = {s.trace_id for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans}
        elif signal == "logs":
            req = ExportLogsServiceRequest.FromString(body)
            ids = {r.trace_id for rl in req.resource_logs for sl in rl.scope_logs
                   for r in sl.log_records}
        with self._lock:
            for t in ids:
                self.arrived["tr-" + t.hex()] = now
        return ok


class ExperimentPoller:
    """A thread that looks at one MLflow experiment every ``interval`` (once it exists) and hands
    its id to :meth:`poll`; MLflow errors (busy, not up yet) only wait for the next round."""

    def __init__(self, url: str, experiment: str, interval: float):
        from mlflow import MlflowClient

        self.client = MlflowClient(url)
        self.experiment = experiment
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def poll(self, experiment_id: str) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        exp_id = None
        while not self._stop.is_set():
            try:
                if exp_id is None:
                    exp = self.client.get_experiment_by_name(self.experiment)
                    exp_id = exp.experiment_id if exp else None
                if exp_id is not None:
                    self.poll(exp_id)
            except Exception:  # noqa: BLE001 - MLflow busy: next round
                pass
            self._stop.wait(self.interval)


class Poller(ExperimentPoller):
    """Reads MLflow's traces of the experiment every ``interval``: when each trace first showed
    complete (not IN_PROGRESS: its root arrived), and when it first had ``n`` assessments."""

    def __init__(self, url: str, experiment: str, interval: float = 0.2):
        from mlflow.tracing.client import TracingClient

        super().__init__(url, experiment, interval)
        self.tracing = TracingClient(url)
        self.seen: dict[str, float] = {}
        self.assessed: dict[str, tuple[int, float]] = {}

    def poll(self, experiment_id: str) -> None:
        infos, _ = self.tracing.store.search_traces(experiment_ids=[experiment_id],
                                                    max_results=500)
        now = time.monotonic()
        for info in infos:
            # a live trace shows IN_PROGRESS first: seen = its root is in too
            if info.state.value != "IN_PROGRESS":
                self.seen.setdefault(info.trace_id, now)
            n = len(info.assessments or [])
            if self.assessed.get(info.trace_id, (-1, 0.0))[0] < n:
                self.assessed[info.trace_id] = (n, now)


def _timestamp(value) -> float | None:
    from datetime import datetime

    if not value:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.timestamp()


def finalized(client, experiment: str, run_id: str, samples: int, scores: int) -> bool:
    """Both runs finished and the task run's tables hold every sample and score (read as a
    user reads them, so any receiver version can be measured)."""
    from inspect_otel.receiver import _mlflow_names
    from tests.receiver.mlflow_view import read_table

    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return False
    runs = client.search_runs([exp.experiment_id],
                              filter_string=f"tags.`inspect.run_id` = '{run_id}'")
    tasks = [r for r in runs if r.data.tags.get(_mlflow_names.TAG_ROLE) == _mlflow_names.ROLE_TASK]
    if len(runs) != 2 or len(tasks) != 1 or any(r.info.status != "FINISHED" for r in runs):
        return False
    try:
        return (len(read_table(client, tasks[0].info.run_id, _mlflow_names.SAMPLES_TABLE)) == samples
                and len(read_table(client, tasks[0].info.run_id, _mlflow_names.SCORES_TABLE)) == scores)
    except Exception:  # noqa: BLE001 - not written yet
        return False


def big_answer_model(kb: int):
    """The scripted calculator model, with one sample (s0) answering ``kb`` kB of text."""
    from tests.support import evals

    def model(input, tools, tool_choice, config):
        output = evals.scripted_model(input, tools, tool_choice, config)
        text = " ".join(m.text for m in input if getattr(m, "text", None))
        if kb and "add 0 2" in text and not output.message.tool_calls and "GRADE" not in text:
            output.choices[0].message.content = "2 " + "x" * (kb * 1024)
        return output

    return model


def log_artifact_stored(client, experiment: str, run_id: str) -> bool:
    from inspect_otel.receiver import _mlflow_names

    exp = client.get_experiment_by_name(experiment)
    tasks = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`inspect.run_id` = '{run_id}' and tags.`{_mlflow_names.TAG_ROLE}` = "
        f"'{_mlflow_names.ROLE_TASK}'"))
    return bool(tasks) and _mlflow_names.TAG_LOG_ARTIFACT in tasks[0].data.tags


def one_eval(server, tmp: Path, receivers: int, tag: str, export_delay_ms: int | None = None,
             pace_s: float = 0.0, content: bool = False, answer_kb: int = 0) -> dict:
    from inspect_ai import eval as inspect_eval

    from inspect_otel import ids
    from tests.support import evals
    from tests.support.receiver import start_receiver

    experiment = f"bench-eval-{tag}"
    # the eval logs are written under tmp: the receivers may store them (--log-artifact-root)
    rps = [start_receiver(server.url, tmp / f"r-{tag}-{i}", experiment, "--log-artifact-root",
                          str(tmp)) for i in range(receivers)]
    # a user's receiver has been up for a while: its writer is connected to MLflow
    from tests.support.wait import wait_for

    wait_for(lambda: all(rp.health()["mlflow"]["writer_ok"] for rp in rps), 120,
             what="receivers connected to MLflow", interval=0.1)
    router = TimingRouter([rp.url for rp in rps]).start()
    poller = Poller(server.url, experiment).start()
    try:
        delays = ("OTEL_BSP_SCHEDULE_DELAY", "OTEL_BLRP_SCHEDULE_DELAY")
        content_var = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
        saved = {k: os.environ.get(k) for k in ("OTEL_EXPORTER_OTLP_ENDPOINT",
                                                 "OTEL_EXPORTER_OTLP_PROTOCOL", content_var,
                                                 *delays)}
        if content:
            os.environ[content_var] = "true"
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = router.url
        os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
        if export_delay_ms is not None:  # the SDK's batch processors' standard knobs
            for k in delays:
                os.environ[k] = str(export_delay_ms)
        evals._attempts.clear()
        try:
            log = inspect_eval(eval_task(pace_s), model=evals.MODEL,
                               model_args={"custom_outputs": big_answer_model(answer_kb)},
                               log_dir=str(tmp / f"logs-{tag}"), epochs=EPOCHS,
                               retry_on_error=1, fail_on_error=False, display="none")[0]
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        end = time.monotonic()  # the hook flushed at run end: everything was sent
        end_wall = time.time()
        samples = log.samples or []
        want = {"tr-" + ids.trace_id_hex(ids.sample_trace_id(s.uuid)): len(s.scores or {})
                for s in samples}
        n_scores = sum(want.values())
        from mlflow import MlflowClient

        client = MlflowClient(server.url)
        deadline = end + 300

        def all_traces() -> bool:
            return all(t in poller.seen for t in want)

        def all_assessed() -> bool:
            return all(poller.assessed.get(t, (0, 0.0))[0] >= n for t, n in want.items())

        while time.monotonic() < deadline and not (all_traces() and all_assessed()):
            time.sleep(0.05)
        assessed = time.monotonic() - end
        while time.monotonic() < deadline and not finalized(
                client, experiment, log.eval.run_id, len(samples), n_scores):
            time.sleep(0.2)
        finalized_s = time.monotonic() - end
        while time.monotonic() < deadline and not log_artifact_stored(
                client, experiment, log.eval.run_id):
            time.sleep(0.2)
        everything = time.monotonic() - end
        last_trace = max(poller.seen[t] for t in want) - end
        # per sample: its end (wall clock in the log) -> trace + assessments queryable
        per_sample, receiver_part = [], []
        for s in samples:
            t = "tr-" + ids.trace_id_hex(ids.sample_trace_id(s.uuid))
            ready = max(poller.seen[t], poller.assessed.get(t, (0, poller.seen[t]))[1])
            done = _timestamp(s.completed_at)
            sample_end = end - (end_wall - done) if done is not None else None
            if sample_end is not None:
                per_sample.append(ready - sample_end)
            if t in router.arrived:
                receiver_part.append(ready - router.arrived[t])
        return {
            "receivers": receivers, "samples": len(samples), "scores": n_scores,
            "errored_samples": sum(1 for s in samples if s.error),
            "eval_end_to_last_trace_s": last_trace,
            "eval_end_to_all_assessed_s": assessed,
            "eval_end_to_finalized_s": finalized_s,
            "eval_end_to_everything_s": everything,
            "sample_end_to_queryable_s": {"p50": statistics.median(per_sample),
                                          "p95": _percentile(per_sample, 0.95),
                                          "max": max(per_sample)},
            "arrival_to_queryable_s": {"p50": statistics.median(receiver_part),
                                       "p95": _percentile(receiver_part, 0.95),
                                       "max": max(receiver_part)},
            "routing": sorted({owner(bytes.fromhex(t[3:]), receivers) for t in want}),
        }
    finally:
        poller.stop()
        router.stop()
        for rp in rps:
            rp.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--receivers", type=int, default=1)
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--export-delay-ms", type=int, default=None,
                    help="OTEL_BSP_SCHEDULE_DELAY / OTEL_BLRP_SCHEDULE_DELAY for the hook "
                         "(default: unset, the hook's 500 ms)")
    ap.add_argument("--pace-seconds", type=float, default=0.0,
                    help="sample k of 10 in epoch e first waits PACE * k / 10 * e seconds, as with "
                         "a real model: samples end spread over the eval (default 0: the whole "
                         "eval ends within about a second)")
    ap.add_argument("--mlflow-catalog", action="store_true",
                    help="let MLflow fetch its model price catalog (stalls offline)")
    ap.add_argument("--content", action="store_true",
                    help="the hook captures message content (OTEL_INSTRUMENTATION_GENAI_CAPTURE_"
                         "MESSAGE_CONTENT=true)")
    ap.add_argument("--answer-kb", type=int, default=0,
                    help="one sample's final answer is this many kB of text")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not args.mlflow_catalog:
        os.environ["MLFLOW_MODEL_CATALOG_URI"] = ""
    os.environ["INSPECT_LOG_DIR"] = tempfile.mkdtemp(prefix="inspect-otel-bench-logs-")
    tmp = Path(tempfile.mkdtemp(prefix="inspect-otel-bench-eval-"))
    server, pg = start_server(tmp, args.backend, args.workers)
    out = {"backend": args.backend, "receivers": args.receivers, "cpu_count": os.cpu_count(),
           "export_delay_ms": args.export_delay_ms, "pace_s": args.pace_seconds,
           "load_avg_start": os.getloadavg(), "runs": []}
    try:
        for i in range(args.repeats):
            r = one_eval(server, tmp, args.receivers, f"{args.receivers}r{i}",
                         args.export_delay_ms, args.pace_seconds, args.content, args.answer_kb)
            out["runs"].append(r)
            print(f"run {i + 1}: {r['samples']} samples ({r['errored_samples']} errored), "
                  f"{r['scores']} scores, {args.receivers} receiver(s): eval end -> last trace "
                  f"{r['eval_end_to_last_trace_s']:.2f} s, -> all assessed "
                  f"{r['eval_end_to_all_assessed_s']:.2f} s, -> finalized "
                  f"{r['eval_end_to_finalized_s']:.2f} s, -> everything (log artifact too) "
                  f"{r['eval_end_to_everything_s']:.2f} s; sample end -> queryable p50 "
                  f"{r['sample_end_to_queryable_s']['p50']:.2f} s p95 "
                  f"{r['sample_end_to_queryable_s']['p95']:.2f} s; arrival -> queryable p50 "
                  f"{r['arrival_to_queryable_s']['p50']:.2f} s p95 "
                  f"{r['arrival_to_queryable_s']['p95']:.2f} s", flush=True)
    finally:
        server.stop()
        if pg is not None:
            pg.stop()
    out["load_avg_end"] = os.getloadavg()
    write_results(args.json, "receiver_eval", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
