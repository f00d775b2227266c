"""What MLflow's UI shows of an eval, decided by pure mappings (no servers): run names, the
sample root's request, conversation and outputs, its trace tags, the trace labels.

``renders_as_chat`` restates MLflow 3.17's own check (its frontend bundle, the message
validation of the trace view: a role among system/user/assistant/tool; text or text-part content;
tool calls with string id, name and arguments): one message that fails it and MLflow shows no
chat at all."""

from __future__ import annotations

import json
from typing import Any

from inspect_ai.model import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    ContentImage,
    ContentReasoning,
    ContentText,
)
from inspect_ai.tool import ToolCall, ToolCallError

from inspect_otel import semconv as sc
from inspect_otel.config import ContentCapture
from inspect_otel.content import ContentPolicy
from inspect_otel.conversation import Conversation
from inspect_otel.receiver import _chat, _forward, _mlflow_names, _root_view, _run_tags
from inspect_otel.receiver._trace_labels import TRACE_TAG_RUN_NAME, missing_labels, run_labels

ROLES = {"system", "user", "assistant", "tool"}


def renders_as_chat(messages: Any) -> bool:
    def content_ok(c: Any) -> bool:
        if c is None or isinstance(c, str):
            return True
        return isinstance(c, list) and all(
            isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text")
            and isinstance(p.get("text"), str) for p in c)

    def call_ok(c: Any) -> bool:
        f = c.get("function") if isinstance(c, dict) else None
        return isinstance(c.get("id"), str) and isinstance(f, dict) and \
            isinstance(f.get("name"), str) and isinstance(f.get("arguments"), str)

    def ok(m: Any) -> bool:
        if not isinstance(m, dict):
            return False
        if m.get("tool_calls") is not None and not (
                isinstance(m["tool_calls"], list) and all(call_ok(c) for c in m["tool_calls"])):
            return False
        if "parts" in m and m.get("content") is None:
            return False
        return m.get("role") in ROLES and content_ok(m.get("content"))

    return isinstance(messages, list) and bool(messages) and all(ok(m) for m in messages)


def conversation() -> list[Any]:
    """An agent's conversation as Inspect holds it: system prompt, question, reasoning and a
    tool call, a tool error, an image, the answer."""
    return [
        ChatMessageSystem(content="You are an on-call SRE."),
        ChatMessageUser(content="Alert: checkout p99 4.2s. Root cause?"),
        ChatMessageAssistant(
            content=[ContentReasoning(reasoning="Pool or DB?"), ContentText(text="Checking.")],
            tool_calls=[ToolCall(id="c1", function="search_logs",
                                 arguments={"query": "timeout \"pool\""})]),
        ChatMessageTool(content="", tool_call_id="c1", function="search_logs",
                        error=ToolCallError(type="timeout", message="search timed out")),
        ChatMessageUser(content=[ContentText(text="A graph:"),
                                 ContentImage(image="data:image/png;base64,AAAA")]),
        ChatMessageAssistant(content="Connection pool exhausted."),
    ]


def semconv(messages: list[Any], limit: int = 100_000) -> str:
    """inspect.sample.messages as the hook makes it: semconv messages within its budget."""
    policy = ContentPolicy(capture=ContentCapture.SPAN_AND_EVENT, max_length=limit)
    return Conversation(policy).input_messages(messages, keep_system=True)


def sample_root(**extra: Any) -> dict[str, Any]:
    return {sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_SAMPLE, sc.INSPECT_RUN_ID: "r",
            sc.INSPECT_EVAL_ID: "e", sc.INSPECT_TASK_NAME: "incident_triage",
            sc.INSPECT_SAMPLE_ID: "inc-101", sc.INSPECT_SAMPLE_EPOCH: 2,
            sc.GEN_AI_CONVERSATION_ID: "sample-uuid", **extra}


def test_a_conversation_becomes_chat_messages_mlflow_renders():
    chat = _chat.chat_messages(semconv(conversation()))
    assert renders_as_chat(chat)
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "tool", "user", "assistant"]
    assert chat[0]["content"] == "You are an on-call SRE."
    assistant = chat[2]
    assert assistant["content"] == "Reasoning:\nPool or DB?\n\nChecking."
    (call,) = assistant["tool_calls"]
    assert call["id"] == "c1" and call["function"]["name"] == "search_logs"
    assert json.loads(call["function"]["arguments"]) == {"query": 'timeout "pool"'}
    assert chat[3] == {"role": "tool", "tool_call_id": "c1", "content": "search timed out",
                       "name": "search_logs"}
    assert chat[4]["content"] == "A graph:\n\n[image: data:image/png;base64,<omitted>]"
    assert chat[5]["content"] == "Connection pool exhausted."


def test_odd_input_still_renders_or_is_refused():
    odd = [{"role": "developer", "parts": [{"type": "text", "content": "be brief"}]},
           {"role": "assistant", "parts": [{"type": "tool_call", "name": "f"},
                                           {"type": "blob", "modality": "audio"},
                                           {"type": "mystery"}]},
           {"role": "user", "parts": [{"type": "tool_call_response", "response": {"ok": 1}}]},
           {"role": "user"}, 42, "...[truncated 7 items]", "stray text"]
    chat = _chat.chat_messages(json.dumps(odd))
    assert renders_as_chat(chat)
    assert chat[0] == {"role": "user", "content": "be brief"}  # an unknown role
    assert chat[1]["tool_calls"][0]["id"] == "call_1_0"  # a tool call without an id gets one
    assert chat[1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert chat[1]["content"] == "[audio: inline]\n\n[mystery part]"
    assert chat[2] == {"role": "tool", "tool_call_id": "", "content": '{"ok":1}'}
    assert chat[3] == {"role": "user", "content": ""}
    assert chat[4] == _chat.omitted_note(7) and "7 messages not shown" in chat[4]["content"]
    assert chat[5] == {"role": "system", "content": "stray text"}
    for bad in (None, "", "not json", "[]", "{}", json.dumps({"role": "user"}), "[" * 100 + "]" * 100):
        assert _chat.chat_messages(bad) is None, bad


def test_a_long_conversation_keeps_its_start_and_end_within_the_budget():
    turns = [ChatMessageSystem(content="system prompt")] + [
        ChatMessageAssistant(content="", tool_calls=[ToolCall(
            id=f"c{i}", function="search_logs", arguments={"q": "x" * 40})])
        for i in range(300)] + [ChatMessageAssistant(content="the answer")]
    sent = semconv(turns, limit=16_384)  # the hook's default budget: it drops middle messages
    assert "...[truncated" in sent
    conv = _chat.conversation(sent)
    assert renders_as_chat(conv.messages)
    assert len(json.dumps(conv.messages, ensure_ascii=False, separators=(",", ":"))) \
        <= 2 * len(sent)
    assert conv.messages[0]["content"] == "system prompt"
    assert conv.messages[-1]["content"] == "the answer"
    assert any(m["content"].startswith("[") and "not shown" in m["content"]
               for m in conv.messages if m["role"] == "system")
    # fit() itself: over the budget, middle messages give way to one note
    many = [{"role": "user", "content": str(i) * 50} for i in range(40)]
    kept = _chat.fit(many, 800)
    assert len(json.dumps(kept, ensure_ascii=False, separators=(",", ":"))) <= 800
    assert kept[0] == many[0] and kept[-1] == many[-1] and "not shown" in kept[len(kept) // 2]["content"]
    assert _chat.fit(many[:2], 10) == many[:2]
    # a sender's endless list (the hook never sends one): at most MAX_ITEMS converted
    endless = [{"role": "user", "parts": [{"type": "text", "content": str(i)}]} for i in range(5000)]
    chat = _chat.chat_messages(json.dumps(endless))
    assert len(chat) == _chat.MAX_ITEMS and renders_as_chat(chat)
    assert chat[0]["content"] == "0" and chat[-1]["content"] == "4999"
    assert f"{5000 - _chat.MAX_ITEMS + 1} messages not shown" in chat[_chat.MAX_ITEMS // 2]["content"]


def test_the_sample_root_opens_on_its_conversation():
    messages = conversation()
    e = _forward.span_enrichment(sample_root(**{
        sc.INSPECT_SAMPLE_MESSAGES: semconv(messages), sc.INSPECT_SAMPLE_INPUT: messages[1].text,
        sc.INSPECT_SAMPLE_OUTPUT: "Connection pool exhausted."}), is_root=True)
    chat = json.loads(e[_chat.CHAT_MESSAGES])
    assert renders_as_chat(chat) and chat[0]["role"] == "system"
    # the request: identity and input, not the conversation (one per epoch, as in every run)
    assert json.loads(e[_mlflow_names.SPAN_INPUTS]) == {
        "sample_id": "inc-101", "epoch": 2, "input": "Alert: checkout p99 4.2s. Root cause?"}
    # the outputs: the agent's turns, as messages (their last assistant message is the response)
    outputs = json.loads(e[_mlflow_names.SPAN_OUTPUTS])
    assert outputs == {"messages": chat[2:]} and renders_as_chat(outputs["messages"])
    # no MLflow session (see _root_view.py): none set, and the sample uuid does not go as one
    assert "session.id" not in e
    assert not _forward.forwarded_attribute(sc.GEN_AI_CONVERSATION_ID, e)
    assert _forward.forwarded_attribute(sc.GEN_AI_CONVERSATION_ID, {})  # inner spans keep it
    # a sample that crashed before its first model call: no turns, its output or outcome
    crashed = _forward.span_enrichment(sample_root(**{
        sc.INSPECT_SAMPLE_MESSAGES: semconv(messages[:2]), sc.INSPECT_SAMPLE_STATUS: "error",
        sc.INSPECT_ERROR_MESSAGE: "boom"}), is_root=True)
    assert json.loads(crashed[_mlflow_names.SPAN_OUTPUTS]) == {"status": "error", "error": "boom"}
    assert len(json.loads(crashed[_chat.CHAT_MESSAGES])) == 2
    # without content capture: the summary, and no chat
    bare = _forward.span_enrichment(sample_root(), is_root=True)
    assert _chat.CHAT_MESSAGES not in bare
    assert json.loads(bare[_mlflow_names.SPAN_INPUTS]) == {
        "sample_id": "inc-101", "epoch": 2, "task": "incident_triage"}


def test_trace_tags_and_labels():
    e = _forward.span_enrichment(sample_root(**{sc.INSPECT_TASK_TAGS: ("baseline", "p v2")}),
                                 is_root=True)
    tag = _mlflow_names.TRACE_TAG_PREFIX
    assert e[tag + "inspect.tag.baseline"] == "true" and e[tag + "inspect.tag.p v2"] == "true"
    assert e[tag + "inspect.tags"] == "baseline, p v2"
    assert e[tag + sc.INSPECT_SAMPLE_ID] == "inc-101"
    assert not any(k.startswith(tag + "inspect.tag.") for k in
                   _forward.span_enrichment(sample_root(), is_root=True))
    # at finalization: the run's eval tags and its name, on the traces that lack them
    run_tags = {"inspect.tag.baseline": "true", "inspect.tags": "baseline",
                "inspect.metadata.team": "evals", "mlflow.runName": "x"}
    labels = run_labels(run_tags, "baseline · gpt-4o · t · #abc123")
    assert labels == {"inspect.tag.baseline": "true",
                      TRACE_TAG_RUN_NAME: "baseline · gpt-4o · t · #abc123"}
    assert missing_labels(labels, {"inspect.tag.baseline": "true"}) == {
        TRACE_TAG_RUN_NAME: "baseline · gpt-4o · t · #abc123"}
    assert missing_labels(labels, labels) == {}
    assert run_labels({}, None) == {}


def test_run_names_lead_with_what_tells_evals_apart():
    attrs = {sc.INSPECT_TASK_NAME: "inspect_evals/incident_triage", sc.INSPECT_MODEL: "openai/gpt-4o",
             sc.INSPECT_TASK_TAGS: ("candidate-v2", "prompt v2")}
    assert _run_tags.task_run_name("9jB6iB8zq6MLJE7XMpoiBW", attrs) == \
        "candidate-v2, prompt v2 · gpt-4o · incident_triage · #9jB6iB"
    assert _run_tags.task_run_name("abcdefgh", {sc.INSPECT_TASK_NAME: "t"}) == "t · #abcdef"
    assert _run_tags.task_run_name("", {}) == "task"
    assert len(_run_tags.task_run_name("e", {sc.INSPECT_TASK_TAGS: ("x" * 400,)})) <= 250
    # one top-level evaluation run per task: no parent run above it
    tags = _run_tags.task_run_tags("e", attrs)
    assert tags[_mlflow_names.TAG_RUN_TYPE] == _mlflow_names.RUN_TYPE_EVALUATION
    assert _mlflow_names.TAG_PARENT_RUN_ID not in tags
    assert tags["inspect.tag.candidate-v2"] == "true"


def test_the_request_is_the_same_in_every_run_and_per_epoch():
    a = _root_view.sample_request(sample_root(**{sc.INSPECT_RUN_ID: "run-1",
                                                 sc.INSPECT_EVAL_ID: "e1",
                                                 sc.INSPECT_MODEL: "openai/gpt-4o"}))
    b = _root_view.sample_request(sample_root(**{sc.INSPECT_RUN_ID: "run-2",
                                                 sc.INSPECT_EVAL_ID: "e2",
                                                 sc.INSPECT_MODEL: "anthropic/claude"}))
    other_epoch = _root_view.sample_request(sample_root(**{sc.INSPECT_SAMPLE_EPOCH: 1}))
    assert a == b and a != other_epoch
    assert a.startswith('{"sample_id": "inc-101", "epoch": 2')  # what the Traces table shows
