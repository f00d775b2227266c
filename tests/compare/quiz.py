"""Two offline evals of one quiz that differ in a known way (mockllm, scripted answers).

The quiz has 24 questions in 4 topics (sample metadata ``topic``). A "model" is a set of
per-question answer rules; the candidate fixes some questions the baseline gets wrong, breaks a
few, and is unsure (right in some epochs only) on others, so the epoch means are fractions.
Scorers: ``match`` (C/I), ``quality`` (dict-valued: ``correct`` 0/1,
``brevity`` a float, ``verdict`` a C/I/P label, ``note`` always None: excluded and counted) and
``length`` (a number where lower is better).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspect_ai import Task, eval, task
from inspect_ai.dataset import Sample
from inspect_ai.log import EvalLog
from inspect_ai.model import ModelOutput, ModelUsage
from inspect_ai.scorer import Score, Target, includes, match, mean, scorer
from inspect_ai.solver import TaskState, generate

MODEL = "mockllm/model"
TOPICS = ("arithmetic", "geography", "history", "science")
QUESTIONS = [(f"q{i:02d}", f"Question {i}: what is {i} + {i}?", str(2 * i), TOPICS[i % 4])
             for i in range(24)]

# question index -> how the model answers: "right", "wrong", "flaky" (right on odd calls), or
# "error" (the model call fails: the sample errors, with fail_on_error=False).
# The baseline gets the even questions wrong; the candidate fixes 10 of them, half-fixes one,
# and breaks one question the baseline got right.
BASELINE = {i: ("wrong" if i % 2 == 0 else "right") for i in range(24)}
CANDIDATE = {**{i: "right" for i in range(24)}, 10: "flaky", 20: "wrong", 1: "wrong"}
# The case: errors, and a sample one side lacks (run on 8 questions and on 7):
# q02 errors in both, q03 in the baseline only, q04 in the candidate only, q07 only in the baseline.
ERRORING_BASELINE = {**BASELINE, 2: "error", 3: "error"}
ERRORING_CANDIDATE = {**CANDIDATE, 2: "error", 4: "error"}


def answering(rules: dict[int, str], extra_only: tuple[str, ...] = ()) -> Any:
    calls: dict[int, int] = {}

    def respond(input: list[Any], tools: Any, tool_choice: Any, config: Any) -> ModelOutput:
        text = " ".join(m.text for m in input if getattr(m, "text", None))
        index = int(text.split("Question ", 1)[1].split(":", 1)[0])
        calls[index] = calls.get(index, 0) + 1
        rule = rules[index]
        if rule == "error":
            raise RuntimeError(f"scripted failure on question {index}")
        right = rule == "right" or (rule == "flaky" and calls[index] % 2 == 1)
        answer = str(2 * index) if right else f"I am not sure, maybe {2 * index + 1}"
        output = ModelOutput.from_content(MODEL, answer if index % 2 else f"The answer: {answer}")
        output.usage = ModelUsage(input_tokens=20, output_tokens=4 + index % 3, total_tokens=24
                                  + index % 3, total_cost=0.0001 * (1 + index % 2))
        return output

    return respond


@scorer(metrics={"*": [mean()]})
def quality():
    async def score(state: TaskState, target: Target) -> Score:
        completion = state.output.completion
        correct = completion.endswith(target.text)
        return Score(value={
            "correct": 1.0 if correct else 0.0,
            "brevity": round(1.0 / len(completion), 6) if completion else 0.0,
            "verdict": "C" if correct else ("P" if target.text[:1] in completion else "I"),
            "note": None,
        })

    return score


@scorer(metrics=[mean()])
def length():
    async def score(state: TaskState, target: Target) -> Score:
        return Score(value=len(state.output.completion) / 3)

    return score


@task
def quiz(count: int = len(QUESTIONS)):
    return Task(
        dataset=[Sample(id=i, input=q, target=t, metadata={"topic": topic, "secret_note": "x"})
                 for i, q, t, topic in QUESTIONS[:count]],
        solver=generate(),
        scorer=[match(location="end"), quality(), length()],
    )


@task
def quiz_extra(count: int = len(QUESTIONS)):
    """Same questions, one more scorer (for "a scorer present on one side only")."""
    base = quiz(count=count)
    return Task(dataset=base.dataset, solver=generate(),
                scorer=[match(location="end"), quality(), length(), includes()], name="quiz")


def run_quiz(log_dir: Path, rules: dict[int, str], epochs: int = 2, **kwargs: Any) -> EvalLog:
    tasks = kwargs.pop("tasks", None) or quiz()
    logs = eval(tasks, model=MODEL, model_args={"custom_outputs": answering(rules)},
                log_dir=str(log_dir), epochs=epochs, display="none", **kwargs)
    return logs[0] if len(logs) == 1 else logs
