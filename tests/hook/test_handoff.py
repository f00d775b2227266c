"""A handoff is one span (issue 16): a real ``react`` agent hands off to a second agent; the hook's
trace has one ``execute_tool transfer_to_helper`` span with the helper's ``invoke_agent`` span
under it, not Inspect's handoff span beside an execute_tool span. The replay of the log agrees."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from inspect_ai import Task, eval
from inspect_ai.agent import handoff, react
from inspect_ai.dataset import Sample
from inspect_ai.log import read_eval_log
from inspect_ai.model import ChatMessageTool, ModelOutput, ModelUsage
from inspect_ai.scorer import includes

from inspect_otel import semconv as sc
from inspect_otel.content import ContentPolicy
from inspect_otel.mapping import map_sample, task_context
from tests.support.capture import CapturedRun, capture

MODEL = "mockllm/model"


def _script(input: list[Any], tools: Any, tool_choice: Any, config: Any) -> ModelOutput:
    """The main agent hands off first; whoever has the turn then submits 42."""
    names = {t.name for t in tools}
    handed_off = any(isinstance(m, ChatMessageTool) for m in input)
    if "transfer_to_helper" in names and not handed_off:
        output = ModelOutput.for_tool_call(MODEL, "transfer_to_helper", {})
    else:
        output = ModelOutput.for_tool_call(MODEL, "submit", {"answer": "42"})
    output.usage = ModelUsage(input_tokens=3, output_tokens=2, total_tokens=5)
    return output


def _run(log_dir: Path, **kwargs: Any) -> Any:
    helper = react(name="helper", description="Answers questions.", prompt="You help.")
    main = react(name="main", tools=[handoff(helper)], prompt="You delegate.")
    task = Task(dataset=[Sample(id="q", input="What is 6 x 7?", target="42")], solver=main,
                scorer=includes())
    return eval(task, model=MODEL, model_args={"custom_outputs": _script}, log_dir=str(log_dir),
                display="none", **kwargs)[0]


@pytest.fixture(scope="module")
def handoff_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapturedRun]:
    yield from capture(tmp_path_factory.mktemp("handoff"), {}, run=_run)


def test_the_handoff_is_one_execute_tool_span_over_the_agent(handoff_run):
    assert handoff_run.log.status == "success"
    spans = [s for s in handoff_run.sink.spans if s.trace_id == handoff_run.roots()[0].trace_id]
    by_id = {s.span_id: s for s in spans}
    assert not [s for s in spans if s.attributes.get(sc.INSPECT_SPAN_TYPE) == "handoff"]
    transfers = [s for s in spans if s.attributes.get(sc.GEN_AI_TOOL_NAME) == "transfer_to_helper"
                 or "transfer_to_helper" in s.name]
    assert len(transfers) == 1
    transfer = transfers[0]
    assert transfer.name == "execute_tool transfer_to_helper"
    assert transfer.attributes[sc.GEN_AI_OPERATION_NAME] == sc.OP_EXECUTE_TOOL
    assert transfer.attributes[sc.INSPECT_TOOL_AGENT] == "helper"
    assert transfer.attributes[sc.GEN_AI_TOOL_CALL_ID]
    # Under the main agent, over the helper agent, which holds the helper's own model call.
    assert by_id[transfer.parent_span_id].name == "invoke_agent main"
    helpers = [s for s in spans if s.name == "invoke_agent helper"]
    assert len(helpers) == 1 and helpers[0].parent_span_id == transfer.span_id
    assert any(s.parent_span_id == helpers[0].span_id and s.name.startswith("chat ") for s in spans)
    assert transfer.start_ns <= helpers[0].start_ns and helpers[0].end_ns <= transfer.end_ns
    # Every span's parent is in the trace (nothing points at the folded handoff span).
    assert all(s.parent_span_id in by_id for s in spans if s.parent_span_id)
    assert handoff_run.roots()[0].attributes[sc.INSPECT_SAMPLE_TOOL_CALLS] == 3  # handoff + 2 submits


def test_replay_maps_the_handoff_the_same(handoff_run):
    log = read_eval_log(handoff_run.log.location)
    replayed = map_sample(log.samples[0], task_context(log.eval), ContentPolicy())
    live = {s.span_id: (s.name, s.parent_span_id) for s in handoff_run.sink.spans
            if s.trace_id == handoff_run.roots()[0].trace_id}
    assert {f"{s.span_id:016x}": (s.name, f"{s.parent_span_id or 0:016x}".replace("0" * 16, ""))
            for s in replayed.spans} == live
