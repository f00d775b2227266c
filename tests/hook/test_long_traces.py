"""Long agent trajectories with content capture, through the real eval loop and a real OTLP/HTTP
endpoint (issue 25): the tool results are what the model saw (precision, on real source code),
the planted secrets never cross the wire (recall, content on and off), a long chat span keeps the
first user turn and the newest messages within the budget, and live equals the replay.
The workload is tests/support/long_agent.py; into MLflow: tests/receiver/test_long_trace.py."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from inspect_ai import eval

from inspect_otel.config import DEFAULT_MAX_ATTRIBUTE_LENGTH as BUDGET
from inspect_otel.replay import export_logs
from tests.support.capture import hook_env
from tests.support.long_agent import CORPUS_LITERALS, MODEL, _chunk_index, long_agent, model_args
from tests.support.otlp_sink import HttpSink, Sink
from tests.support.planted_secrets import SHAPES, USER_PATTERN

TURNS = 40  # 38 tool results of 4 kB: ~150 kB of conversation, far over the 16 kB budget
SAMPLES = 2
CONTENT = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT",
           "INSPECT_OTEL_CAPTURE_PROVIDER_CALL": "true"}


@dataclass
class Run:
    log: Any
    sink: Sink

    @property
    def raw(self) -> bytes:
        return self.sink.raw

    def spans(self, prefix: str) -> list[Any]:
        return [s for s in self.sink.spans if s.name.startswith(prefix)]


def _run(tmp: Path, env: dict[str, str], turns: int) -> Run:
    server = HttpSink()
    try:
        with pytest.MonkeyPatch.context() as mp:
            hook_env(mp, server.endpoint, {**env, "OTEL_METRICS_EXPORTER": "none",
                                           "INSPECT_OTEL_REDACT_PATTERNS": USER_PATTERN})
            log = eval(long_agent(turns=turns, samples=SAMPLES), model=MODEL,
                       model_args=model_args(), log_dir=str(tmp), display="none",
                       log_model_api=True)[0]
            assert log.status == "success"
            assert server.sink.wait_for(lambda s: any(
                x.attributes.get("inspect.span.kind") == "run" for x in s.spans), timeout=60)
    finally:
        server.stop()
    return Run(log, server.sink)


@pytest.fixture(scope="module")
def content_on(tmp_path_factory) -> Run:
    return _run(tmp_path_factory.mktemp("long-on"), CONTENT, TURNS)


@pytest.fixture(scope="module")
def content_off(tmp_path_factory) -> Run:
    return _run(tmp_path_factory.mktemp("long-off"), {}, 4)


def test_the_tool_results_are_what_the_model_saw(content_on):
    """Precision end to end: every chunk of real source code the agent read arrives as it was
    read, but for the lines holding a literal secret-looking value (a cookie literal, a
    docstring's example password)."""
    reads = content_on.spans("execute_tool read_file")
    assert len(reads) == SAMPLES * (TURNS - 2)
    chunks = _chunk_index()
    lines = altered = 0
    for span in reads:
        args = json.loads(span.attributes["gen_ai.tool.call.arguments"])
        original = chunks[(args["path"], args["chunk"])].splitlines()
        sent = span.attributes["gen_ai.tool.call.result"].splitlines()
        assert len(sent) == len(original)
        lines += len(original)
        changed = [a for a, b in zip(original, sent) if a != b]
        assert all(any(literal in a for literal in CORPUS_LITERALS) for a in changed), changed
        altered += len(changed)
    assert lines > 5000 and altered <= 4, altered


def test_no_planted_secret_crosses_the_wire(content_on, content_off):
    for run in (content_on, content_off):
        assert [shape for shape, secret in SHAPES.items() if secret.encode() in run.raw] == []
    # with content on, the settings the agent looked up arrived: their code and names, not
    # their secrets
    (lookup,) = {s.attributes["gen_ai.tool.call.result"]
                 for s in content_on.spans("execute_tool lookup")}
    assert 'DB_PASSWORD = "[REDACTED]"' in lookup and "client = Anthropic(api_key=" in lookup
    assert json.loads(content_on.spans("execute_tool lookup")[0].attributes[
        "gen_ai.tool.call.arguments"]) == {"key": "settings"}  # a bare key is no secret name


def test_a_long_chat_span_keeps_the_first_turn_and_the_newest_messages(content_on):
    chats = sorted(content_on.spans("chat "), key=lambda s: s.start_ns)
    assert len(chats) == SAMPLES * TURNS
    last = chats[-1].attributes
    messages = json.loads(last["gen_ai.input.messages"])
    assert len(last["gen_ai.input.messages"]) <= BUDGET
    assert messages[0]["role"] == "user" and messages[0]["parts"][0]["content"].startswith("Review")
    assert messages[1].startswith("...[truncated ") and messages[-1]["role"] == "tool"
    assert json.loads(last["gen_ai.system_instructions"])[0]["content"].startswith("You are")
    # the raw provider call likewise: its conversation fitted element by element
    request = json.loads(last["inspect.model.call.request"])
    assert len(last["inspect.model.call.request"]) <= BUDGET
    assert any(isinstance(m, str) and m.startswith("...[truncated ") for m in request["messages"])
    # and each turn is on its own span: every chat span's output, every tool result
    assert all("gen_ai.output.messages" in c.attributes for c in chats)


def test_each_span_once_and_live_equals_the_replay(content_on, monkeypatch):
    live = {(s.trace_id, s.span_id): s for s in content_on.sink.spans
            if s.attributes.get("inspect.span.kind") != "run"}
    twice = [k for k, n in Counter((s.trace_id, s.span_id) for s in content_on.sink.spans).items()
             if n > 1]
    assert twice == []
    replay = HttpSink()
    try:
        hook_env(monkeypatch, replay.endpoint, {**CONTENT, "OTEL_METRICS_EXPORTER": "none",
                                                "INSPECT_OTEL_REDACT_PATTERNS": USER_PATTERN})
        assert export_logs([content_on.log.location]).ok
        replayed = {(s.trace_id, s.span_id): s for s in replay.sink.spans
                    if s.attributes.get("inspect.span.kind") != "run"}
    finally:
        replay.stop()
    assert replayed and set(replayed) == set(live)
    different = [replayed[k].name for k in replayed if replayed[k] != live[k]]
    assert different == []
