"""Baseline vs candidate in MLflow's own evaluation UI, checked in a real browser.

Starts the embedded stack (MLflow + receiver, fresh data directory, free ports), runs the bundled
calculator eval twice through the live hook (a baseline tagged ``baseline`` and a candidate
tagged ``candidate-v2`` whose model gets one more question wrong), waits until both landed, then
takes screenshots with headless Chromium (Debian's ``chromium``) of:

- the runs list (``runs-list.png``): the two evals told apart by name and tags;
- a sample trace (``trace.png``): it opens with its scores;
- MLflow's side-by-side comparison of the two evaluation runs (``compare-runs.png``): the same
  sample paired across baseline and candidate;
- the candidate's run page (``run-overview.png``): its overview opens with the task's own results
  (its description, then the metrics table: ``includes/accuracy``, ..., the per-sample step
  metrics after them).

    .venv/bin/python docs/eval_ui_screenshots.py [--out docs/img] [--keep]

Offline: mockllm, no API key, everything on 127.0.0.1. ``--keep`` leaves the stack running and
prints its URL.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--hide-scrollbars")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def candidate_model(input: Any, tools: Any, tool_choice: Any, config: Any) -> Any:
    """The demo's scripted model, except that it answers 17 * 23 wrongly (a regression)."""
    from inspect_otel.demo.task import scripted_model

    from inspect_ai.model import ModelOutput

    from inspect_otel.demo.task import MODEL

    out = scripted_model(input, tools, tool_choice, config)
    if "17 * 23" in " ".join(getattr(m, "text", "") for m in input) and not out.message.tool_calls:
        wrong = ModelOutput.from_content(MODEL, "17 * 23 = 381. ANSWER: 381")
        wrong.usage = out.usage
        return wrong
    return out


def run_eval(log_dir: Path, tags: list[str], model_fn: Any) -> Any:
    from inspect_ai import eval as inspect_eval

    from inspect_otel.demo.task import MODEL, calculator_demo

    return inspect_eval(calculator_demo(), model=MODEL, model_args={"custom_outputs": model_fn},
                        log_dir=str(log_dir), tags=tags, metadata={"prompt": "v1"},
                        display="none")[0]


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


def screenshot(chromium: str, url: str, path: Path, profile: Path, size: str = "1920,1080",
               budget_ms: int = 20000) -> None:
    # A fresh profile per shot: nothing cached, no state from the previous page.
    shot_profile = Path(tempfile.mkdtemp(dir=profile))
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={shot_profile}",
                    f"--window-size={size}", f"--virtual-time-budget={budget_ms}",
                    f"--screenshot={path}", url],
                   check=True, capture_output=True, timeout=180)
    print(f"  {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "img")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("error: needs chromium (apt-get install -y chromium)", file=sys.stderr)
        return 2

    from inspect_otel.demo.task import scripted_model
    from inspect_otel.stack import EmbeddedStack, otlp_headers

    work = Path(tempfile.mkdtemp(prefix="inspect-otel-ui-"))
    experiment = "baseline-vs-candidate"
    stack = EmbeddedStack(data_dir=work / "data", mlflow_port=_free_port(),
                          http_port=_free_port(), grpc_port=_free_port(), experiment=experiment)
    stack.start()
    try:
        for key in [k for k in os.environ if k.startswith(("OTEL_", "INSPECT_OTEL_"))]:
            os.environ.pop(key)
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = stack.otlp_http_url
        os.environ["OTEL_EXPORTER_OTLP_HEADERS"] = otlp_headers(stack.token)  # the receiver's token
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
        os.environ["MLFLOW_TRACKING_URI"] = stack.mlflow_url
        baseline = run_eval(work / "logs", ["baseline"], scripted_model)
        candidate = run_eval(work / "logs", ["candidate-v2"], candidate_model)

        from mlflow import MlflowClient

        client = MlflowClient(stack.mlflow_url)
        landed = wait_for_runs(client, experiment, [baseline, candidate])
        exp_id = landed["experiment_id"]
        base_run = landed["runs"][baseline.eval.eval_id].info.run_id
        cand_run = landed["runs"][candidate.eval.eval_id].info.run_id
        wrong = next(s for s in candidate.samples if s.input == "What is 17 * 23?")
        from inspect_otel.demo import mlflow_trace_id

        trace_id = mlflow_trace_id(wrong.uuid)
        ui = f"{stack.mlflow_url}/#/experiments/{exp_id}"
        args.out.mkdir(parents=True, exist_ok=True)
        profile = work / "chromium"
        profile.mkdir()
        print("screenshots:")
        screenshot(chromium, f"{ui}/runs", args.out / "runs-list.png", profile)
        # the trace drawer needs more (virtual) time to render than a page
        screenshot(chromium, f"{ui}/traces?selectedEvaluationId={trace_id}",
                   args.out / "trace.png", profile, budget_ms=30000)
        screenshot(chromium, f"{ui}/evaluation-runs?selectedRunUuid={cand_run}"
                   f"&compareToRunUuid={base_run}", args.out / "compare-runs.png", profile)
        screenshot(chromium, f"{ui}/runs/{cand_run}", args.out / "run-overview.png", profile)
        if args.keep:
            print(f"stack left running: {ui} (data in {work})")
            return 0
    finally:
        if not args.keep:
            stack.stop()
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
