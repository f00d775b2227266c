"""Offline Inspect evals for tests and demos: a calculator agent driven by a scripted mockllm.

Everything runs through the real Inspect eval loop with ``mockllm/model``. Every scripted output
sets ``usage`` (without it mockllm downloads a tokenizer, which fails offline).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from inspect_ai import Task, eval, eval_set, task
from inspect_ai.dataset import Sample
from inspect_ai.log import EvalLog
from inspect_ai.model import ChatMessageTool, ModelOutput, ModelUsage, get_model
from inspect_ai.scorer import Score, Target, includes, match, mean, scorer
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


# --- a slow agent (live export): each tool call sleeps; samples that crash, retry, hit a limit ---
# (id, behaviour): "ok" finishes; "crash" raises from its 2nd tool call; "retry" raises from its
# 2nd tool call on its first attempt only; "limit" sleeps past the sample's time limit.
SLOW_SAMPLES = ("ok", "crash", "retry", "limit")
SLOW_CALLS = 3
_slow_attempts: dict[tuple[str, int], int] = {}


def slow_model(input: list[Any], tools: Any, tool_choice: Any, config: Any) -> ModelOutput:
    """Calls `wait` SLOW_CALLS times, then answers "done"."""
    calls = sum(1 for m in input if isinstance(m, ChatMessageTool))
    if calls < SLOW_CALLS:
        output = ModelOutput.for_tool_call(MODEL, "wait", {"step": calls})
    else:
        output = ModelOutput.from_content(MODEL, "done")
    output.usage = _usage()
    return output


@solver
def count_attempts():
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        key = (str(state.sample_id), state.epoch)
        _slow_attempts[key] = _slow_attempts.get(key, 0) + 1
        state.metadata["attempt"] = _slow_attempts[key]
        return state

    return solve


def slow_wait(seconds: float):
    @tool
    def wait():
        async def execute(step: int) -> str:
            """Wait a while, then report the step.

            Args:
              step: Which step this is.
            """
            from inspect_ai.solver._task_state import sample_state

            state = sample_state()
            sample_id = str(state.sample_id) if state else ""
            attempt = state.metadata.get("attempt", 1) if state else 1
            if step == 1 and (sample_id == "crash" or (sample_id == "retry" and attempt == 1)):
                raise RuntimeError(f"{sample_id}: the tool crashed")
            await asyncio.sleep(seconds * (10 if sample_id == "limit" and step == 1 else 1))
            return f"step {step} done"

        return execute

    return wait


@task
def slow_agent(seconds: float = 1.0, samples: str = ",".join(SLOW_SAMPLES)):
    ids_ = samples.split(",")
    return Task(
        dataset=[Sample(id=i, input=f"work on {i}", target="done") for i in ids_],
        solver=[count_attempts(), use_tools(slow_wait(seconds)()), generate()],
        scorer=match(),
        time_limit=max(1, round(seconds * 6)),
    )


def run_slow(log_dir: Path, seconds: float = 1.0, samples: tuple[str, ...] = SLOW_SAMPLES,
             **kwargs: Any) -> EvalLog:
    _slow_attempts.clear()
    logs = eval(
        slow_agent(seconds=seconds, samples=",".join(samples)), model=MODEL,
        model_args={"custom_outputs": slow_model}, log_dir=str(log_dir), retry_on_error=1,
        fail_on_error=False, display="none", **kwargs,
    )
    return logs[0]


# --- large model calls (request sizes): each call sends a prompt of ``size`` characters, which its
# chat span carries twice with content capture and the raw provider call (the input messages and
# mockllm's own record of the request) ---
def _answer_ok(input: list[Any], tools: Any, tool_choice: Any, config: Any) -> ModelOutput:
    output = ModelOutput.from_content(MODEL, "ok")
    output.usage = _usage()
    return output


@solver
def ask_again(calls: int):
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        for _ in range(calls):
            state.output = await get_model().generate(state.messages)
        return state

    return solve


@task
def large_calls(samples: int = 1, calls: int = 1, size: int = 100_000):
    return Task(
        dataset=[Sample(id=f"large{i}", input=f"sample {i}: " + "x" * size, target="ok")
                 for i in range(samples)],
        solver=ask_again(calls),
        scorer=match(),
    )


def run_large_calls(log_dir: Path, samples: int, calls: int, size: int = 100_000,
                    **kwargs: Any) -> EvalLog:
    """Every model call's raw request is logged (``log_model_api``), not only the first few."""
    logs = eval(
        large_calls(samples=samples, calls=calls, size=size), model=MODEL,
        model_args={"custom_outputs": _answer_ok}, log_dir=str(log_dir), display="none",
        log_model_api=True, **kwargs,
    )
    return logs[0]
