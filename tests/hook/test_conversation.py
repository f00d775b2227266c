"""Content capture in linear time (``inspect_otel.conversation``): each message converted and
redacted once per sample, what fits the budget chosen before anything is serialised, the raw
provider call likewise. Real Inspect message objects; the long-agent eval is in
test_long_traces.py."""

from __future__ import annotations

import json

import pytest
from inspect_ai.model import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    ModelOutput,
)
from inspect_ai.tool import ToolCall

from inspect_otel import conversation as conv
from inspect_otel.config import ContentCapture
from inspect_otel.content import ContentPolicy, message_to_semconv, to_json, truncate_json
from inspect_otel.conversation import Conversation, fit_call

POLICY = ContentPolicy(capture=ContentCapture.SPAN_AND_EVENT, max_length=4000)


def _agent(turns: int, result: str = "x" * 900) -> list:
    """System, first user turn, then `turns` assistant tool calls and tool results."""
    messages = [ChatMessageSystem(content="You are careful."),
                ChatMessageUser(content="Review the code. password=hunter2 please")]
    for i in range(turns):
        call = ToolCall(id=f"c{i}", function="read_file", arguments={"path": f"f{i}.py"})
        messages.append(ChatMessageAssistant(content="", tool_calls=[call]))
        messages.append(ChatMessageTool(content=f"chunk {i}: {result}", tool_call_id=f"c{i}",
                                        function="read_file"))
    return messages


@pytest.fixture
def conversions(monkeypatch):
    """Counts conversions of each message (by id) through the module's own converter."""
    counts: dict[str, int] = {}

    def counting(message):
        counts[message.id] = counts.get(message.id, 0) + 1
        return message_to_semconv(message)

    monkeypatch.setattr(conv, "message_to_semconv", counting)
    return counts


def test_each_message_is_converted_once_however_many_calls_see_it(conversions):
    messages = _agent(60)
    c = Conversation(POLICY)
    for end in range(3, len(messages) + 1, 2):  # every model call's input: the conversation so far
        c.input_messages(messages[:end])
    assert conversions and max(conversions.values()) == 1
    # and the middle of the conversation is never converted at all once it is out of the budget
    assert len(conversions) < len(messages)


def test_the_work_per_call_is_bounded_by_the_budget(conversions):
    c = Conversation(POLICY)
    c.input_messages(_agent(300))  # a first sight of a long conversation
    # the first user turn and what fits from the end: ~4 tool results of 900 characters
    assert len(conversions) <= 10


def test_what_fits_the_budget_keeps_the_first_user_turn_and_the_newest_messages():
    messages = _agent(50)
    out = Conversation(POLICY).input_messages(messages)
    assert len(out) <= POLICY.max_length
    data = json.loads(out)
    assert data[0]["role"] == "user" and data[0]["parts"][0]["content"].startswith("Review")
    assert "hunter2" not in out and "password=[REDACTED]" in out  # content-tier redaction
    marker = data[1]
    assert isinstance(marker, str) and marker.startswith("...[truncated ")
    omitted = int(marker.split()[1])
    kept = data[2:]
    assert len(kept) + omitted + 1 == len(messages) - 1  # everything but the system message
    assert kept[-1] == json.loads(to_json(message_to_semconv(messages[-1])))  # the newest, whole
    assert [m["id"] for m in kept] == [m.id for m in messages[-len(kept):]]  # a contiguous tail


def test_a_short_conversation_is_the_same_json_as_before():
    messages = _agent(2)
    out = Conversation(POLICY).input_messages(messages)
    full = [message_to_semconv(m) for m in messages[1:]]
    assert out == truncate_json(POLICY.redactor.content_data(full), POLICY.max_length)


def test_a_newest_message_too_long_alone_is_cut_inside_its_strings():
    messages = _agent(3, result="y" * 20_000)
    out = Conversation(POLICY).input_messages(messages)
    assert len(out) <= POLICY.max_length
    data = json.loads(out)
    assert data[-1]["role"] == "tool" and "truncated" in data[-1]["parts"][0]["response"]
    assert data[0]["role"] == "user"


def test_the_root_keeps_the_system_prompt_in_its_head():
    messages = _agent(40)
    c = Conversation(POLICY)
    data = json.loads(c.input_messages(messages, keep_system=True))
    assert [data[0]["role"], data[1]["role"]] == ["system", "user"]
    assert json.loads(c.system_instructions(messages)) == [
        {"type": "text", "content": "You are careful."}]
    assert c.system_instructions(messages[1:]) is None


def test_a_message_changed_under_the_same_id_is_converted_again():
    c = Conversation(POLICY)
    first = ChatMessageUser(content="one", id="same")
    second = ChatMessageUser(content="two", id="same")
    assert "one" in c.input_messages([first]) and "two" in c.input_messages([second])


def test_the_cache_is_bounded():
    c = Conversation(POLICY)
    messages = _agent(400)
    for message in messages:
        c.piece(message)
    assert c._cached_chars <= conv._CACHE_BUDGETS * POLICY.max_length


def test_output_and_tool_definitions():
    c = Conversation(POLICY)
    output = ModelOutput.from_content("mockllm/model", "token: abc123def456 and done")
    data = json.loads(c.output_messages(output))
    assert data[0]["finish_reason"] == "stop" and "abc123def456" not in json.dumps(data)


# --- the raw provider call ---------------------------------------------------------------------

def _request(turns: int) -> dict:
    messages = [{"role": "system", "content": "sys"}]
    for i in range(turns):
        messages.append({"role": "assistant", "content": f"call {i}"})
        messages.append({"role": "tool", "content": f"attachment://h{i}"})
    return {"model": "gpt-x", "messages": messages, "max_tokens": 10,
            "extra_headers": {"X-Client-Tag": "secret-tag"}, "api_key": "sk-live-abcdef"}


def test_a_long_raw_request_is_fitted_element_by_element():
    attachments = {f"h{i}": f"result {i} " + "z" * 800 for i in range(200)}
    out = fit_call(_request(200), attachments, POLICY)
    assert len(out) <= POLICY.max_length
    request = json.loads(out)
    assert list(request) == ["model", "messages", "max_tokens", "api_key"]  # order kept, headers gone
    assert request["api_key"] == "[REDACTED]" and "secret-tag" not in out
    messages = request["messages"]
    assert messages[0] == {"role": "system", "content": "sys"}
    assert messages[1].startswith("...[truncated ")
    assert messages[-1]["content"].startswith("result 199 ")  # the newest, resolved


def test_a_short_raw_request_is_the_whole_request():
    attachments = {f"h{i}": f"result {i}" for i in range(2)}
    out = json.loads(fit_call(_request(2), attachments, POLICY))
    assert [m["content"] for m in out["messages"]] == ["sys", "call 0", "result 0", "call 1",
                                                       "result 1"]
