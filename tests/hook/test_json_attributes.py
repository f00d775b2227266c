"""JSON-valued attributes always parse, however long the content (issue 10, item 5).

Before the fix a model answer longer than INSPECT_OTEL_MAX_ATTRIBUTE_LENGTH was cut mid-string
inside ``gen_ai.output.messages`` (and the next call's ``gen_ai.input.messages``): invalid JSON.
"""

from __future__ import annotations

import json
import re

import pytest
from inspect_ai import Task, eval, task
from inspect_ai.dataset import Sample
from inspect_ai.model import ModelOutput, ModelUsage
from inspect_ai.scorer import match
from inspect_ai.solver import generate

from inspect_otel.content import ContentPolicy, truncate_json
from tests.support.capture import hook_env
from tests.support.otlp_sink import HttpSink

MODEL = "mockllm/model"
ANSWER = "lorem ipsum \"quoted\" \\ \u00e9\n" * 12_000  # ~300 kB with characters JSON escapes
LIMIT = 16_384  # the default INSPECT_OTEL_MAX_ATTRIBUTE_LENGTH

JSON_ATTRIBUTES = (
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.tool.definitions", "gen_ai.tool.call.arguments", "inspect.sample.messages",
    "inspect.task.args", "inspect.task.model_args",
    "inspect.task.plan", "inspect.task.results", "inspect.task.model_usage",
    "inspect.score.value_json",
)


def _long_answer(input, tools, tool_choice, config):  # noqa: ANN001 - mockllm's signature
    turns = sum(1 for m in input if m.role == "assistant")
    output = ModelOutput.from_content(MODEL, ANSWER if turns == 0 else "short")
    output.usage = ModelUsage(input_tokens=10, output_tokens=5, total_tokens=15)
    return output


@task
def long_answers():
    return Task(dataset=[Sample(input="write a lot", target="x", metadata={"notes": ANSWER})],
                solver=[generate(), generate()], scorer=match())


@pytest.fixture(scope="module")
def spans(tmp_path_factory):
    server = HttpSink()
    with pytest.MonkeyPatch.context() as mp:
        hook_env(mp, server.endpoint, {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
                                       "OTEL_METRICS_EXPORTER": "none"})
        eval(long_answers(), model=MODEL, model_args={"custom_outputs": _long_answer},
             display="none", log_dir=str(tmp_path_factory.mktemp("long-answers")))
        assert server.sink.wait_for(lambda s: any(
            x.attributes.get("inspect.span.kind") == "task" for x in s.spans), timeout=30)
    server.stop()
    return server.sink.spans


def test_a_300kb_answer_keeps_every_json_attribute_valid(spans):
    seen = set()
    for span in spans:
        for key in JSON_ATTRIBUTES:
            if key in span.attributes:
                value = span.attributes[key]
                assert len(value) <= LIMIT, (span.name, key, len(value))
                json.loads(value)  # raises on invalid JSON
                seen.add(key)
    assert {"gen_ai.input.messages", "gen_ai.output.messages", "inspect.sample.messages"} <= seen
    first_chat = next(s for s in spans if s.name.startswith("chat "))
    (answer,) = json.loads(first_chat.attributes["gen_ai.output.messages"])
    text = answer["parts"][0]["content"]
    assert text.startswith(ANSWER[:1000]) and "...[truncated " in text  # cut inside, marked
    assert answer["role"] == "assistant" and answer["finish_reason"] == "stop"
    second_chat = [s for s in spans if s.name.startswith("chat ")][1]
    history = json.loads(second_chat.attributes["gen_ai.input.messages"])
    assert [m["role"] for m in history] == ["user", "assistant"]  # the shape is kept


def test_truncate_json_cuts_the_longest_strings_and_keeps_the_shape():
    value = {"short": "keep me", "long": "y" * 5000, "list": ["z" * 3000, 1, None, True]}
    out = truncate_json(value, 1000)
    parsed = json.loads(out)
    assert len(out) <= 1000 and parsed["short"] == "keep me" and parsed["list"][1:] == [1, None,
                                                                                         True]
    kept, cut = re.fullmatch(r"(y*)\.\.\.\[truncated (\d+) chars\]", parsed["long"]).groups()
    assert len(kept) + int(cut) == 5000 and len(kept) > 100  # the count is of what was cut
    assert re.fullmatch(r"z+\.\.\.\[truncated \d+ chars\]", parsed["list"][0])
    assert truncate_json(value, 100_000) == json.dumps(value, separators=(",", ":"))


def test_truncate_json_drops_middle_items_when_the_structure_is_too_big():
    messages = [{"role": "user", "id": f"m{i}", "parts": [{"type": "text", "content": f"hi {i}"}]}
                for i in range(5000)]
    out = ContentPolicy(max_length=16_384).clean_json(messages)
    parsed = json.loads(out)
    assert len(out) <= 16_384
    assert parsed[0]["id"] == "m0" and parsed[-1]["id"] == "m4999"  # both ends kept
    (marker,) = [m for m in parsed if isinstance(m, str)]
    kept = len(parsed) - 1
    assert marker == f"...[truncated {5000 - kept} items]"
    assert all(m["parts"][0]["content"].startswith("hi ") for m in parsed if isinstance(m, dict))


@pytest.mark.parametrize("limit", [1, 10, 30, 200])
def test_truncate_json_always_parses(limit):
    out = truncate_json({"a": ["b" * 500] * 50}, limit)
    assert len(out) <= limit or out == "null"
    json.loads(out)
