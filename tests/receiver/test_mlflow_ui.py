"""MLflow's own UI, in headless Chromium, over what a real receiver wrote from two real evals
(the calculator agent, 2 epochs, content capture on) tagged ``baseline`` and ``candidate-v2``:

- the Evaluation runs page lists one row per eval, and the part of each name it shows tells
  them apart;
- the side-by-side comparison puts the same sample and epoch of both runs on one row, every
  cell under its own column header;
- a sample trace opens on its conversation.

The page checks read the DOM of MLflow 3.17.2's pages (its ARIA roles and component ids); the
times each page took to show its data are printed. Skipped without Chromium (Debian:
``apt-get install -y chromium``)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from inspect_otel import ids

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))

from headless_chromium import Browser, find_chromium, text_visible  # noqa: E402

EXPERIMENT = "mlflow-ui"
CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (headless)")

# For each name cell of the Evaluation runs page: its text and how many of its characters are
# visible (the cell ends the text with an ellipsis).
VISIBLE_NAMES = """[...document.querySelectorAll('#run-name-cell')].map(el => {
  const text = el.firstChild, box = el.getBoundingClientRect(), range = document.createRange();
  let shown = 0;
  for (let n = 1; n <= text.length; n++) {
    range.setStart(text, 0); range.setEnd(text, n);
    if (range.getBoundingClientRect().right > box.right - 12) break;  // the ellipsis' room
    shown = n;
  }
  return [el.innerText, shown];
})"""

# The comparison's trace table: the left edge and width of each column header, and of each
# row's cells (MLflow lays both out as ARIA rows; a cell under another header is misplaced).
COMPARISON_LAYOUT = """(() => {
  const request = [...document.querySelectorAll('[role=columnheader]')]
      .find(h => h.innerText.trim().startsWith('Request'));
  const box = e => [Math.round(e.getBoundingClientRect().x), Math.round(e.getBoundingClientRect().width)];
  const header = request.closest('[role=row]');
  const left = header.getBoundingClientRect().x - 1;  // not the runs list beside it
  const rows = [...document.querySelectorAll('[role=row]')]
      .filter(r => r.getBoundingClientRect().x >= left && r.querySelector('[role=cell]'));
  return {header: [...header.children].map(c => [c.innerText.trim().split('\\n')[0], ...box(c)]),
          rows: rows.map(r => [...r.children].map(c => [c.innerText.trim(), ...box(c)]))};
})()"""


@pytest.fixture(scope="module")
def two_evals(mlflow_server, mlflow_client, tmp_path_factory):
    from tests.support.capture import hook_env
    from tests.support.evals import run_calculator
    from tests.support.receiver import start_receiver

    tmp = tmp_path_factory.mktemp("mlflow-ui")
    rp = start_receiver(mlflow_server.url, tmp / "data", EXPERIMENT, settle=2.0)
    try:
        with pytest.MonkeyPatch.context() as m:
            hook_env(m, rp.url, {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
                                 "OTEL_METRICS_EXPORTER": "none"})
            base = run_calculator(tmp / "logs", epochs=2, tags=["baseline"])
            cand = run_calculator(tmp / "logs", epochs=2, tags=["candidate-v2"])
        rp.wait_idle(240)
    finally:
        rp.kill()
    exp = mlflow_client.get_experiment_by_name(EXPERIMENT)
    runs = {}
    for name, log in (("base", base), ("cand", cand)):
        (runs[name],) = mlflow_client.search_runs(
            [exp.experiment_id], f"tags.`inspect.eval_id` = '{log.eval.eval_id}'")
    return dict(url=mlflow_server.url, exp=exp.experiment_id, base=base, cand=cand, runs=runs)


def _in_browser(url: str, route: str, ready: str, *reads: str, height: int = 1080) -> list[Any]:
    async def go() -> list[Any]:
        async with Browser(CHROMIUM, 1920, height) as browser:
            await browser.skip_first_visit(url)
            took = await browser.open(f"{url}/#/experiments/{route}", ready)
            print(f"{route.split('?')[0]}: ready after {took:.2f}s")
            return [await browser.evaluate(r) for r in reads]
    return asyncio.run(go())


def test_evaluation_runs_page_tells_the_evals_apart(two_evals):
    runs = two_evals["runs"]
    names = [runs["base"].info.run_name, runs["cand"].info.run_name]
    (shown, expanders) = _in_browser(
        two_evals["url"], f"{two_evals['exp']}/evaluation-runs", text_visible(*names),
        VISIBLE_NAMES,
        "document.querySelectorAll('[data-component-id=\"mlflow.eval-runs.parent-child-expand-button\"]').length")
    assert expanders == 0, "no nested rows: one row per eval"
    assert sorted(text for text, _ in shown) == sorted(names)
    visible = {text[:n] for text, n in shown}
    assert len(visible) == 2 and all(n >= 8 for _, n in shown), shown
    assert {v[:8] for v in visible} == {"baseline", "candidat"}


def test_the_comparison_pairs_each_sample_and_epoch_under_its_headers(two_evals):
    runs, base, cand = two_evals["runs"], two_evals["base"], two_evals["cand"]
    route = (f"{two_evals['exp']}/evaluation-runs?selectedRunUuid={runs['cand'].info.run_id}"
             f"&compareToRunUuid={runs['base'].info.run_id}")
    # tall enough for every row (MLflow renders only the rows in view)
    (layout,) = _in_browser(two_evals["url"], route,
                            text_visible("Comparing", base.samples[0].input), COMPARISON_LAYOUT,
                            height=2400)
    labels = [label for label, _, _ in layout["header"]]
    assert {"Request", "Trace ID", "Response", "match", "State"} <= set(labels), labels
    assert len(layout["rows"]) == len(base.samples) == len(cand.samples)  # sample x epoch
    # what each column's cells hold, two lines each (the candidate's first, then the baseline's)
    holds = {"Request": lambda t: re.fullmatch(r"add \d+ \d+", t),
             "Trace ID": lambda t: re.fullmatch(r"tr-[0-9a-f]{32}", t),
             "match": lambda t: t in ("0", "1", "null"),
             "Tokens": lambda t: t.isdigit() or t == "null",  # a sample that never called the model
             "State": lambda t: t in ("OK", "Error")}
    for row in layout["rows"]:
        under = {label: next((text for text, cx, cw in row if (cx, cw) == (x, w)), None)
                 for label, x, w in layout["header"]}
        for label, ok in holds.items():
            lines = (under[label] or "").split("\n")
            if label == "Request":
                lines = lines[:1]  # one request per row: the pair's
            assert len(lines) == (1 if label == "Request" else 2) and all(map(ok, lines)), \
                (label, under)
    trace_col = [label for label, _, _ in layout["header"]].index("Trace ID")
    pairs = {tuple(row[trace_col][0].split("\n")) for row in layout["rows"]}
    want = {tuple("tr-" + ids.trace_id_hex(ids.sample_trace_id(s.uuid)) for s in (c, b))
            for c in cand.samples for b in base.samples
            if (c.id, c.epoch) == (b.id, b.epoch)}
    assert pairs == want


def test_a_sample_trace_opens_on_its_conversation(two_evals):
    """The root span's Inputs show the question, its Outputs the agent's tool calls and the
    tool's error (the calculator agent divides by zero)."""
    sample = next(s for s in two_evals["cand"].samples if not s.error)
    trace_id = "tr-" + ids.trace_id_hex(ids.sample_trace_id(sample.uuid))
    error = "division by zero"
    assert any(m.error and error in m.error.message for m in sample.messages if m.role == "tool")
    (text,) = _in_browser(two_evals["url"],
                          f"{two_evals['exp']}/traces?selectedEvaluationId={trace_id}",
                          text_visible("Outputs", sample.input, error), "document.body.innerText")
    inputs = text.index("\nInputs")  # the pane's heading (the tab is "Inputs / Outputs")
    outputs = text.index("\nOutputs", inputs)
    assert sample.input in text[inputs:outputs]
    assert "divide" in text[outputs:] and error in text[outputs:]
