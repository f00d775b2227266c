"""Baseline vs candidate in MLflow's own UI, checked in a real browser.

Starts the embedded stack (MLflow + receiver, fresh data directory, free ports) and runs an agent
eval shaped like a team's own (``docs/incident_triage.py``: 8 incidents x 2 epochs, a react
agent with two tools, two scorers, one sample that crashes; offline) through the live hook with
content capture on: a baseline (``--tags baseline``), the same baseline again (a re-run), and a
candidate (``--tags candidate-v2``). Once all three landed, headless Chromium (Debian's
``chromium``) opens MLflow's pages, waits until each shows its data (the time that took is
printed), and takes screenshots of:

- ``eval-runs.png``: the Evaluation runs page: one row per eval, baseline, re-run and
  candidate told apart by name;
- ``compare-runs.png``: MLflow's side-by-side comparison of candidate and baseline: one row per
  incident, both runs' epoch means;
- ``trace.png``: a sample trace: it opens on its conversation, system prompt first;
- ``traces.png``: the Traces table filtered to the candidate by its Inspect tag;
- ``runs-list.png``: the runs list;
- ``run-overview.png``: the candidate's run page: the task's own results first;
- ``long-trace.png``: then a 200-turn agent sample (tests/support/long_agent.py: each turn reads
  4 kB of source code) with content capture and the raw provider call: its trace opens on its
  whole conversation, every turn a span of its own.

    .venv/bin/python docs/eval_ui_screenshots.py [--out docs/img] [--width 1920] [--keep]

MLflow's Assistant panel opens by itself on a browser's first visit and takes a third of the
width; the screenshots are taken as a user sees MLflow after closing it once. Everything runs on
127.0.0.1. ``--keep`` leaves the stack running and prints its URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headless_chromium import Browser, choose, click, fill, find_chromium, text_visible
from incident_triage import INCIDENTS, TASK, run_triage

EXPERIMENT = "incident-triage"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_runs(client: Any, experiment: str, logs: list[Any], timeout: float = 300) -> dict:
    """The task run of each log once its finalization landed (samples table written)."""
    from inspect_otel.receiver._mlflow_names import TAG_FINALIZED

    deadline = time.monotonic() + timeout
    while True:
        exp = client.get_experiment_by_name(experiment)
        found = {}
        if exp is not None:
            for log in logs:
                runs = client.search_runs([exp.experiment_id],
                                          f"tags.`inspect.eval_id` = '{log.eval.eval_id}'")
                if runs and runs[0].data.tags.get(TAG_FINALIZED, "").startswith(
                        f"{len(log.samples)}/"):
                    found[log.eval.eval_id] = runs[0]
        if len(found) == len(logs):
            return {"experiment_id": exp.experiment_id, "runs": found}
        if time.monotonic() > deadline:
            raise SystemExit(f"the evals did not land in MLflow within {timeout:.0f}s")
        time.sleep(1.0)


@dataclass(frozen=True)
class Shot:
    name: str  # file name
    route: str  # MLflow's hash route
    ready: str  # JS expression: the page shows its data
    what: str
    actions: tuple[str, ...] = ()  # JS statements run in turn once ready (what a user clicks)
    done: str = "true"  # JS expression: the actions took effect


def shots(exp_id: str, base: Any, rerun: Any, cand: Any, trace_id: str, n_samples: int
          ) -> list[Shot]:
    ui = f"#/experiments/{exp_id}"
    question = "What is the root cause?"
    table = "web-shared.traces-table.filter"
    return [
        Shot("eval-runs.png", f"{ui}/evaluation-runs",
             text_visible(base.info.run_name, rerun.info.run_name, cand.info.run_name),
             "Evaluation runs"),
        Shot("compare-runs.png", f"{ui}/evaluation-runs?selectedRunUuid={cand.info.run_id}"
             f"&compareToRunUuid={base.info.run_id}",
             text_visible("Comparing", question), "side-by-side comparison"),
        Shot("trace.png", f"{ui}/traces?selectedEvaluationId={trace_id}",
             text_visible("on-call SRE"), "a sample trace"),
        # the Traces table filtered as a user does: Filters, field Tag, key, value, Apply
        Shot("traces.png", f"{ui}/traces", text_visible(question), "Traces, filtered by tag",
             actions=(click(f"{table}.trigger"), click(f"{table}.field"), choose("Tag"),
                      fill(f"{table}.key", "inspect.tag.candidate-v2"), fill(f"{table}.value", "true"),
                      click(f"{table}.apply")),
             done=text_visible(f"{n_samples} of ")),
        Shot("runs-list.png", f"{ui}/runs", text_visible(cand.info.run_name), "runs list"),
        Shot("run-overview.png", f"{ui}/runs/{cand.info.run_id}", text_visible("Inspect results"),
             "the candidate's run page"),
    ]


LONG_TURNS = 200


def run_long_agent(log_dir: Path) -> Any:
    """One 200-turn agent sample, content and raw provider call captured (issue 25)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from inspect_ai import eval

    from tests.support.long_agent import MODEL, long_agent, model_args

    os.environ["INSPECT_OTEL_CAPTURE_PROVIDER_CALL"] = "true"
    try:
        return eval(long_agent(turns=LONG_TURNS, samples=1), model=MODEL, model_args=model_args(),
                    log_dir=str(log_dir), display="none", log_model_api=True,
                    tags=["long-agent"])[0]
    finally:
        os.environ.pop("INSPECT_OTEL_CAPTURE_PROVIDER_CALL")


def long_trace_shot(exp_id: str, trace_id: str) -> Shot:
    return Shot("long-trace.png", f"#/experiments/{exp_id}/traces?selectedEvaluationId={trace_id}",
                text_visible("You are a code reviewer"), f"a {LONG_TURNS}-turn agent trace")


async def take(chromium: str, origin: str, todo: list[Shot], out: Path, width: int,
               height: int) -> dict[str, float]:
    """Each shot: open its page, wait until it shows its data (the seconds that took are
    returned: MLflow's load time as a user sees it, at this machine's load), act, screenshot."""
    took = {}
    async with Browser(chromium, width, height) as browser:
        await browser.skip_first_visit(origin)
        for shot in todo:
            took[shot.name] = await browser.open(f"{origin}/{shot.route}", shot.ready)
            for action in shot.actions:
                await browser.evaluate(action)
                await asyncio.sleep(0.5)  # a popover opens, a list renders
            if shot.actions:
                await browser.wait(shot.done)
                await asyncio.sleep(1.0)
            await browser.screenshot(out / shot.name)
            print(f"  {out / shot.name}  ({shot.what}: ready after {took[shot.name]:.2f}s)")
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "img")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("error: needs chromium (apt-get install -y chromium)", file=sys.stderr)
        return 2

    from inspect_otel.stack import EmbeddedStack, otlp_headers

    work = Path(tempfile.mkdtemp(prefix="inspect-otel-ui-"))
    stack = EmbeddedStack(data_dir=work / "data", mlflow_port=_free_port(),
                          http_port=_free_port(), grpc_port=_free_port(), experiment=EXPERIMENT)
    stack.start()
    try:
        for key in [k for k in os.environ if k.startswith(("OTEL_", "INSPECT_OTEL_"))]:
            os.environ.pop(key)
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = stack.otlp_http_url
        os.environ["OTEL_EXPORTER_OTLP_HEADERS"] = otlp_headers(stack.token)  # the receiver's token
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
        os.environ["MLFLOW_TRACKING_URI"] = stack.mlflow_url
        logs = work / "logs"
        baseline = run_triage(logs, "baseline", ["baseline"])
        rerun = run_triage(logs, "baseline", ["baseline"])
        candidate = run_triage(logs, "candidate", ["candidate-v2"])

        from mlflow import MlflowClient

        from inspect_otel.demo import mlflow_trace_id

        client = MlflowClient(stack.mlflow_url)
        landed = wait_for_runs(client, EXPERIMENT, [baseline, rerun, candidate])
        runs = landed["runs"]
        base, again, cand = (runs[log.eval.eval_id] for log in (baseline, rerun, candidate))
        # the candidate's first incident, first epoch: a trace whose conversation has tool calls
        sample = next(s for s in candidate.samples if s.id == INCIDENTS[0].id and s.epoch == 1)
        args.out.mkdir(parents=True, exist_ok=True)
        print(f"screenshots at {args.width}x{args.height}:")
        asyncio.run(take(chromium, stack.mlflow_url,
                         shots(landed["experiment_id"], base, again, cand,
                               mlflow_trace_id(sample.uuid), len(candidate.samples)),
                         args.out, args.width, args.height))
        long_log = run_long_agent(logs)
        wait_for_runs(client, EXPERIMENT, [long_log])
        asyncio.run(take(chromium, stack.mlflow_url, [long_trace_shot(
            landed["experiment_id"], mlflow_trace_id(long_log.samples[0].uuid))],
            args.out, args.width, args.height))
        if args.keep:
            print(f"stack left running: {stack.mlflow_url}/#/experiments/"
                  f"{landed['experiment_id']} (data in {work}; task {TASK})")
            return 0
    finally:
        if not args.keep:
            stack.stop()
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
