"""Offline Inspect evals for tests and demos: a calculator agent driven by a scripted mockllm.

Everything runs through the real Inspect eval loop with ``mockllm/model``. Every scripted output
sets ``usage`` (without it mockllm downloads a tokenizer, which fails offline).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from inspect_ai import Task, eval, eval_set, task
from inspect_ai.dataset import Sample
from inspect_ai.log import EvalLog
from inspect_ai.model import ChatMessageTool, ModelOutput, ModelUsage, get_model
from inspect_ai.scorer import Score, Target, accuracy, includes, match, mean, scorer
from inspect_ai.solver import Generate, TaskState, generate, solver, use_tools
from inspect_ai.tool import ToolError, tool
from inspect_ai.util import sandbox, span

MODEL = "mockllm/model"
SECRET = "sk-test-abcdefghijklmnopqrstuvwxyz012345"
USAGE = dict(input_tokens=10, output_tokens=5, input_tokens_cache_read=3, total_tokens=18)

# (id, input, target): "wrong" is answered incorrectly, "boom" always errors, "flaky" errors on
# its first attempt of each epoch and succeeds on the retry.
SAMPLES = [
    ("a", "add 1 2", "3"),
    ("b", "add 2 5", "7"),
    ("wrong", "add 3 4", "100"),
    ("boom", "add 1 1", "2"),
    ("flaky", "add 4 4", "8"),
]
_attempts: dict[tuple[str, int], int] = {}


def _usage() -> ModelUsage:
    return ModelUsage(**USAGE)


def scripted_model(input: list[Any], tools: Any, tool_choice: Any, config: Any) -> ModelOutput:
    """add(x, y) -> divide(x, 0) (a tool error) -> the sum as the answer; graders answer C."""
    text = " ".join(m.text for m in input if getattr(m, "text", None))
    if "GRADE" in text:
        output = ModelOutput.from_content(MODEL, "GRADE: C")
    else:
        numbers = [int(n) for n in re.findall(r"add (\d+) (\d+)", text)[0]]
        tool_messages = sum(1 for m in input if isinstance(m, ChatMessageTool))
        if tool_messages == 0:
            output = ModelOutput.for_tool_call(MODEL, "add", {"x": numbers[0], "y": numbers[1]})
        elif tool_messages == 1:
            output = ModelOutput.for_tool_call(MODEL, "divide", {"x": numbers[0], "y": 0})
        else:
            output = ModelOutput.from_content(MODEL, str(sum(numbers)))
    output.usage = _usage()
    return output


@tool
def add():
    async def execute(x: int, y: int) -> int:
        """Add two integers.

        Args:
          x: First addend.
          y: Second addend.
        """
        return x + y

    return execute


@tool
def divide():
    async def execute(x: int, y: int) -> float:
        """Divide x by y.

        Args:
          x: Dividend.
          y: Divisor.
        """
        if y == 0:
            raise ToolError("division by zero")
        return x / y

    return execute


@solver
def chaos():
    """Runs a sandbox command inside a user span, and makes 'boom' and 'flaky' fail."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        async with span("prepare"):
            await sandbox().exec(["echo", "ready"])
        key = (str(state.sample_id), state.epoch)
        _attempts[key] = _attempts.get(key, 0) + 1
        if state.sample_id == "boom":
            raise RuntimeError("boom: this sample always fails")
        if state.sample_id == "flaky" and _attempts[key] == 1:
            raise RuntimeError("flaky: first attempt fails")
        return state

    return solve


@scorer(metrics=[mean()])
def judge():
    """A model-graded scorer: asks the (mock) model for a grade."""

    async def score(state: TaskState, target: Target) -> Score:
        result = await get_model().generate(f"GRADE this answer: {state.output.completion}")
        return Score(value=1.0 if "GRADE: C" in result.completion else 0.0,
                     answer=state.output.completion, explanation=result.completion)

    return score


@task
def calculator(api_key: str = SECRET, samples: int = len(SAMPLES)):
    return Task(
        dataset=[Sample(id=i, input=x, target=t) for i, x, t in SAMPLES[:samples]],
        solver=[use_tools(add(), divide()), chaos(), generate()],
        scorer=[match(), includes(), judge()],
        sandbox="local",
    )


@task
def simple_calculator(count: int = 3):
    """Only well-behaved samples (for eval_set and replay tests)."""
    rows = [(f"s{i}", f"add {i} {i + 1}", str(2 * i + 1)) for i in range(count)]
    return Task(
        dataset=[Sample(id=i, input=x, target=t) for i, x, t in rows],
        solver=[use_tools(add(), divide()), generate()],
        scorer=match(),
    )


def model_args() -> dict[str, Any]:
    return {"custom_outputs": scripted_model}


def run_calculator(log_dir: Path, epochs: int = 2, **kwargs: Any) -> EvalLog:
    _attempts.clear()
    logs = eval(
        calculator(), model=MODEL, model_args=model_args(), log_dir=str(log_dir),
        epochs=epochs, retry_on_error=1, fail_on_error=False, display="none",
        **kwargs,
    )
    return logs[0]


def run_simple(log_dir: Path, count: int = 3, **kwargs: Any) -> EvalLog:
    logs = eval(
        simple_calculator(count=count), model=MODEL, model_args=model_args(),
        log_dir=str(log_dir), display="none", **kwargs,
    )
    return logs[0]


def run_simple_eval_set(log_dir: Path, count: int = 2) -> list[EvalLog]:
    success, logs = eval_set(
        [simple_calculator(count=count)], log_dir=str(log_dir), model=MODEL,
        model_args=model_args(), display="none",
    )
    assert success
    return logs
