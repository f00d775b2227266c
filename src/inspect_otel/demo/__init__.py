"""`inspect-otel demo`: the embedded stack plus a bundled offline eval, end to end.

1. Reuse an inspect-otel stack already answering on the ports, or start one (``inspect-otel up``).
2. Run the bundled calculator eval (``inspect_otel.demo.task``) with the hook on and content
   capture on: no network, no API key.
3. Wait until its runs, traces and assessments are queryable in MLflow, and print them.
4. Keep the stack up for browsing until Ctrl-C, or with ``--exit`` stop it and exit.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from inspect_otel import ids
from inspect_otel.stack import CAPTURE_ENV, EmbeddedStack, StackError, kept_token, otlp_headers
from inspect_otel.stack._signals import STOP_SIGNALS, install_sigterm_handler
from inspect_otel.stack._supervise import supervise
from inspect_otel.stack.cli import add_stack_arguments, stack_from_args, start_stack

LANDING_TIMEOUT_S = 180.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stack_arguments(parser)
    parser.add_argument("--exit", action="store_true",
                        help="stop the stack and exit once the data has landed (scripts, CI)")
    parser.add_argument("--timeout", type=float, default=LANDING_TIMEOUT_S,
                        help=f"seconds to wait for the data to land in MLflow (default {LANDING_TIMEOUT_S:.0f})")


# ------------------------------------------------------------------------------- the eval


@dataclass
class EvalFacts:
    run_id: str
    eval_id: str
    task: str
    status: str
    sample_uuids: list[str]
    scores: int  # number of ScoreEvents (one assessment each)
    metrics: dict[str, float]
    log_location: str


def configure_hook_env(stack: EmbeddedStack, token: str | None) -> None:
    """Point the hook at the stack, the way a user's shell would after `inspect-otel up`."""
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = stack.otlp_http_url
    os.environ.pop("OTEL_SDK_DISABLED", None)
    os.environ.pop("INSPECT_OTEL_ENABLED", None)
    os.environ.setdefault(CAPTURE_ENV, "true")
    if token:
        os.environ["OTEL_EXPORTER_OTLP_HEADERS"] = otlp_headers(token)


def run_demo_eval(log_dir: str) -> EvalFacts:
    # Imported late: the hook reads its settings from the environment configured above.
    from inspect_ai import eval as inspect_eval

    from .task import MODEL, calculator_demo, scripted_model

    log = inspect_eval(
        calculator_demo(),
        model=MODEL,
        model_args={"custom_outputs": scripted_model},
        log_dir=log_dir,
        display="none",
    )[0]
    return facts_from_log(log)


def facts_from_log(log: Any) -> EvalFacts:
    metrics: dict[str, float] = {}
    for score in (log.results.scores if log.results else []):
        for name, metric in score.metrics.items():
            metrics[f"{score.name}/{name}"] = float(metric.value)
    samples = log.samples or []
    return EvalFacts(
        run_id=log.eval.run_id,
        eval_id=log.eval.eval_id,
        task=log.eval.task,
        status=log.status,
        sample_uuids=[s.uuid for s in samples if s.uuid],
        scores=sum(len(s.scores or {}) for s in samples),
        metrics=metrics,
        log_location=log.location,
    )


# ------------------------------------------------------------------------- what landed


@dataclass
class Landed:
    experiment_id: str | None = None
    task_run: Any = None
    traces: dict[str, Any] = field(default_factory=dict)  # mlflow trace id -> Trace
    assessments: int = 0

    def complete(self, facts: EvalFacts) -> bool:
        return (
            self.task_run is not None
            and self.task_run.info.status in ("FINISHED", "FAILED", "KILLED")
            # The receiver writes this last, once it has applied every sample of the task.
            and self.task_run.data.metrics.get("samples/received", 0) >= len(facts.sample_uuids)
            and len(self.traces) == len(facts.sample_uuids)
            and self.assessments >= facts.scores
        )


def mlflow_trace_id(sample_uuid: str) -> str:
    return "tr-" + ids.trace_id_hex(ids.sample_trace_id(sample_uuid))


def query_landed(client: Any, facts: EvalFacts, landed: Landed) -> Landed:
    """One look at MLflow (cheap enough to poll): runs by Inspect ids, traces by their ids."""
    from mlflow.exceptions import MlflowException

    if landed.task_run is None or landed.task_run.info.status == "RUNNING" or not landed.complete(facts):
        exp_ids = [e.experiment_id for e in client.search_experiments()]
        if exp_ids:
            runs = client.search_runs(exp_ids, f"tags.`inspect.eval_id` = '{facts.eval_id}'")
            if runs:
                landed.task_run = runs[0]
                landed.experiment_id = runs[0].info.experiment_id
    for uuid in facts.sample_uuids:
        tid = mlflow_trace_id(uuid)
        trace = landed.traces.get(tid)
        if trace is not None and len(trace.info.assessments or []) > 0:
            continue
        try:
            trace = client.get_trace(tid)
        except MlflowException:
            continue
        if trace is not None:
            landed.traces[tid] = trace
    landed.assessments = sum(len(t.info.assessments or []) for t in landed.traces.values())
    return landed


def wait_until_landed(stack: EmbeddedStack, facts: EvalFacts, timeout: float, out: TextIO) -> Landed:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stack.mlflow_url)
    landed = Landed()
    start = time.monotonic()
    last = -10.0
    while True:
        try:
            query_landed(client, facts, landed)
        except Exception as exc:  # MLflow busy or briefly unreachable: keep polling
            out.write(f"  (MLflow query failed: {exc.__class__.__name__}: {exc}; retrying)\n")
        if landed.complete(facts):
            return landed
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            return landed
        if elapsed - last >= 10:
            out.write(
                f"  waiting for MLflow ... {elapsed:.0f}s: task run "
                f"{'yes' if landed.task_run else 'no'}, traces {len(landed.traces)}/"
                f"{len(facts.sample_uuids)}, assessments {landed.assessments}/{facts.scores}\n"
            )
            out.flush()
            last = elapsed
        time.sleep(1.0)


def report(stack: EmbeddedStack, facts: EvalFacts, landed: Landed) -> str:
    base = stack.mlflow_url
    lines = [
        "",
        f"Demo eval: task {facts.task}, status {facts.status}, "
        f"{len(facts.sample_uuids)} samples (log: {facts.log_location})",
    ]
    if landed.experiment_id:
        exp = f"{base}/#/experiments/{landed.experiment_id}"
        lines.append(f"  MLflow experiment   {exp}")
        if landed.task_run is not None:
            lines.append(f"  task run            {exp}/runs/{landed.task_run.info.run_id}")
        lines.append(f"  evaluation runs     {exp}/evaluation-runs")
        lines.append(f"  traces              {exp}/traces")
    if landed.task_run is not None:
        metrics = landed.task_run.data.metrics
        lines.append("  task metrics (MLflow):")
        for key in sorted(metrics):
            lines.append(f"    {key:<40} {metrics[key]:g}")
    else:
        lines.append("  task run: not found in MLflow")
    lines.append(f"  traces in MLflow:      {len(landed.traces)} of {len(facts.sample_uuids)} samples")
    lines.append(f"  assessments in MLflow: {landed.assessments} (scores in the eval: {facts.scores})")
    lines.append("  Inspect's own metrics: "
                 + ", ".join(f"{k}={v:g}" for k, v in sorted(facts.metrics.items())))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> int:
    out = sys.stderr
    stack = stack_from_args(args, out)
    started = False
    undo = install_sigterm_handler()
    try:
        if stack.already_running():
            out.write(f"Using the inspect-otel stack already running (MLflow {stack.mlflow_url}, "
                      f"OTLP {stack.otlp_http_url}).\n")
        else:
            if not start_stack(stack, out):
                return 1
            started = True

        # A stack already running (`inspect-otel up` of the same data directory) keeps its token
        # there; a stack started here settled its own (the same file).
        try:
            token = stack.token if started else kept_token(stack.data_dir)
        except StackError as exc:
            out.write(f"error: {exc}\n")
            return 1
        configure_hook_env(stack, token)
        out.write("Running the demo eval (calculator agent, scripted mockllm/model, 5 samples, "
                  "content capture on) ...\n")
        facts = run_demo_eval(str((stack.data_dir / "eval-logs").resolve()))
        out.write(f"Eval finished ({facts.status}); waiting for its data in MLflow ...\n")
        landed = wait_until_landed(stack, facts, args.timeout, out)
        sys.stdout.write(report(stack, facts, landed))
        sys.stdout.flush()
        ok = facts.status == "success" and landed.complete(facts)
        if not ok:
            out.write(
                "error: not everything landed in MLflow in time. Is the hook installed "
                "(`pip install -e .` registers its entry point)? Receiver log: "
                f"{stack.data_dir / 'logs' / 'receiver.log'}\n"
            )

        if args.exit or not started:
            if not started and not args.exit:
                out.write("The stack was already running; it keeps running.\n")
            return 0 if ok else 1
        sys.stdout.write(stack.summary() + "Browse the results; press Ctrl-C to stop the stack.\n")
        sys.stdout.flush()
        code = supervise(stack, out)
        return code if ok else 1
    except STOP_SIGNALS:
        out.write("\nInterrupted.\n")
        return 130
    finally:
        if started:
            out.write("Stopping the stack ...\n")
            stack.stop()
        undo()
