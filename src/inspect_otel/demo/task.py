"""The bundled demo evaluation: a calculator agent driven by a scripted mock model.

Everything is offline and deterministic. ``mockllm/model`` is given a *callable* as
``custom_outputs``: it sees the conversation so far and answers from ``SCRIPT``, so samples can
run concurrently without their scripted turns getting mixed up. One sample is scripted to make a
mistake and one hits a tool error, so the demo shows a score below 1 and an error span.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.model import (
    ChatMessage,
    ChatMessageTool,
    ChatMessageUser,
    GenerateConfig,
    ModelOutput,
    ModelUsage,
)
from inspect_ai.scorer import includes
from inspect_ai.solver import generate, system_message, use_tools
from inspect_ai.tool import Tool, ToolError, ToolInfo, tool

MODEL = "mockllm/model"
TASK_NAME = "calculator_demo"


@dataclass(frozen=True)
class Turn:
    question: str
    target: str
    expression: str  # what the scripted model types into the calculator
    answer: str  # final answer template; {result} is the tool's output


SCRIPT: tuple[Turn, ...] = (
    Turn("What is 17 * 23?", "391", "17 * 23", "17 * 23 = {result}. ANSWER: {result}"),
    Turn("What is (1234 + 4321) / 5?", "1111", "(1234 + 4321) / 5",
         "The sum is 5555; divided by 5 that is {result}. ANSWER: {result}"),
    Turn("What is 2 ** 10 - 24?", "1000", "2 ** 10 - 24", "ANSWER: {result}"),
    # The scripted model mistypes the expression: a wrong answer, scored I.
    Turn("What is 99 * 99?", "9801", "99 * 98", "ANSWER: {result}"),
    # Division by zero: the tool call fails (an error on the tool span), the model recovers.
    Turn("What is 7 / 0?", "undefined", "7 / 0",
         "The calculator reports an error ({result}), so the result is undefined. ANSWER: undefined"),
)

_OPS: dict[type, Any] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Pow: operator.pow, ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def evaluate(expression: str) -> float | int:
    """Arithmetic only: numbers, + - * / // % ** and parentheses (no names, no calls)."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 100:
                raise ValueError("exponent too large")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"unsupported expression: {ast.dump(node)[:60]}")

    value = ev(ast.parse(expression, mode="eval"))
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@tool
def calculator() -> Tool:
    async def execute(expression: str) -> str:
        """Evaluate an arithmetic expression.

        Args:
            expression: Arithmetic using numbers, + - * / // % ** and parentheses.

        Returns:
            The value of the expression.
        """
        try:
            return str(evaluate(expression))
        except ZeroDivisionError:
            raise ToolError("division by zero")
        except (ValueError, SyntaxError) as exc:
            raise ToolError(str(exc))

    return execute


def _usage(messages: list[ChatMessage], output_text: str) -> ModelUsage:
    # Always set: without usage, mockllm counts tokens with a tokenizer it downloads (offline: fails).
    prompt = sum(len(m.text) for m in messages) // 4 + 20
    completion = len(output_text) // 4 + 5
    return ModelUsage(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)


def scripted_model(
    input: list[ChatMessage], tools: list[ToolInfo], tool_choice: Any, config: GenerateConfig
) -> ModelOutput:
    """The mock model's policy: call the calculator once, then answer from its result."""
    question = next((m.text for m in input if isinstance(m, ChatMessageUser)), "")
    turn = next((t for t in SCRIPT if t.question == question), None)
    if turn is None:
        out = ModelOutput.from_content(MODEL, "I can only answer the demo's questions.")
        out.usage = _usage(input, out.completion)
        return out
    last = input[-1]
    if isinstance(last, ChatMessageTool):
        result = last.error.message if last.error else last.text
        text = turn.answer.format(result=result)
        out = ModelOutput.from_content(MODEL, text)
    else:
        out = ModelOutput.for_tool_call(
            MODEL, "calculator", {"expression": turn.expression},
            content=f"Let me compute {turn.expression} with the calculator.",
        )
    out.usage = _usage(input, out.completion)
    return out


@task(name=TASK_NAME)
def calculator_demo() -> Task:
    return Task(
        dataset=[
            Sample(id=f"q{i + 1}", input=t.question, target=t.target)
            for i, t in enumerate(SCRIPT)
        ],
        solver=[
            system_message("You are a careful assistant. Use the calculator for arithmetic, "
                           "then end with 'ANSWER: <value>'."),
            use_tools(calculator()),
            generate(),
        ],
        scorer=includes(),
    )
