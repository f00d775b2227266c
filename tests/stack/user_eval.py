"""A user's own eval file, as `inspect eval` runs it from their shell (tests/stack): three
questions, a scripted mockllm model (usage set, so Inspect needs no tokenizer), one scorer."""

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.model import ModelOutput, ModelUsage, get_model
from inspect_ai.scorer import match
from inspect_ai.solver import generate

QUESTIONS = 3


def _answer(text: str) -> ModelOutput:
    output = ModelOutput.from_content("mockllm/model", text)
    output.usage = ModelUsage(input_tokens=10, output_tokens=2, total_tokens=12)
    return output


@task
def user_eval() -> Task:
    answers = [_answer(str(2 * i)) for i in range(1, QUESTIONS + 1)]
    return Task(
        dataset=[Sample(id=i, input=f"What is {i} + {i}?", target=str(2 * i))
                 for i in range(1, QUESTIONS + 1)],
        solver=generate(), scorer=match(),
        model=get_model("mockllm/model", custom_outputs=answers),
    )
