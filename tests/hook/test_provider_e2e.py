"""Inspect's real ``openai`` and ``anthropic`` providers (real SDKs, real HTTP) against local
OpenAI- and Anthropic-compatible servers, with the hook exporting to a real OTLP sink (issue 16).

One eval: the model under evaluation is ``openai/gpt-4o-mini`` (``OPENAI_BASE_URL``), a scorer asks
the ``grader`` role (``anthropic/...`` with its own base URL, credentials in it), another scorer
asks ``anthropic/...`` directly (``ANTHROPIC_BASE_URL``). Each chat span must say which server it
went to, and with the raw-call switch carry the provider's own JSON, without the API key that the
SDKs sent and that Inspect's own log holds (in the request's ``extra_headers``).

The Anthropic models run with ``max_tokens=1024``: Inspect streams Anthropic calls from 8192
``max_tokens`` up (the default for unknown models), and the local server answers plain JSON only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from inspect_ai import Task, eval
from inspect_ai.dataset import Sample
from inspect_ai.model import GenerateConfig, get_model
from inspect_ai.scorer import Score, Target, match, mean, scorer
from inspect_ai.solver import TaskState, generate, use_tools

from inspect_otel import semconv as sc
from inspect_otel.replay import export_logs
from tests.support.capture import CapturedRun, capture
from tests.support.evals import add
from tests.support.otlp_sink import HttpSink
from tests.support.provider_servers import (
    ANTHROPIC_RESPONSE_MODEL,
    ANTHROPIC_USAGE,
    API_KEY,
    OPENAI_RESPONSE_MODEL,
    OPENAI_USAGE,
    ProviderServer,
)

MODEL = "openai/gpt-4o-mini"
GRADER = "anthropic/claude-grader"
JUDGE = "anthropic/claude-judge"
JUDGE_CONFIG = GenerateConfig(max_tokens=1024)
# b's prompt is over 100 characters: Inspect holds such strings of a ModelEvent.call as
# attachment references at sample end; the span must carry the text.
ROWS = [("a", "add 1 2", "3"), ("b", "add 2 5, and say nothing else. " + "Please. " * 20, "7")]


@scorer(metrics=[mean()])
def graded():
    """Model-graded through the grader role."""

    async def score(state: TaskState, target: Target) -> Score:
        result = await get_model(role="grader").generate(f"GRADE {state.output.completion}")
        return Score(value=1.0 if "GRADE: C" in result.completion else 0.0)

    return score


@scorer(metrics=[mean()])
def second_opinion():
    """Model-graded through a model named in the scorer (no role, no base URL of its own)."""

    async def score(state: TaskState, target: Target) -> Score:
        result = await get_model(JUDGE, config=JUDGE_CONFIG).generate(
            f"GRADE {state.output.completion}")
        return Score(value=1.0 if "GRADE: C" in result.completion else 0.0)

    return score


def provider_task() -> Task:
    return Task(
        dataset=[Sample(id=i, input=x, target=t) for i, x, t in ROWS],
        solver=[use_tools(add()), generate()],
        scorer=[match(), graded(), second_opinion()],
    )


class Servers:
    def __init__(self) -> None:
        self.openai, self.anthropic, self.grader = ProviderServer(), ProviderServer(), ProviderServer()

    def env(self) -> dict[str, str]:
        return {"OPENAI_BASE_URL": f"{self.openai.url}/v1", "ANTHROPIC_BASE_URL": self.anthropic.url,
                "OPENAI_API_KEY": API_KEY, "ANTHROPIC_API_KEY": API_KEY}

    def stop(self) -> None:
        for server in (self.openai, self.anthropic, self.grader):
            server.stop()


def _run(servers: Servers):
    def run(log_dir: Path, **kwargs: Any) -> Any:
        # The grader's base URL carries credentials; they must never reach a span.
        grader_url = f"http://inspect:{API_KEY}@127.0.0.1:{servers.grader.port}"
        return eval(
            provider_task(), model=MODEL, log_dir=str(log_dir), display="none",
            model_roles={"grader": get_model(GRADER, base_url=grader_url, memoize=False,
                                             config=JUDGE_CONFIG)},
            # A header name that redaction alone would not catch: only dropping headers keeps it in.
            extra_headers={"X-Client-Tag": API_KEY}, **kwargs,
        )[0]

    return run


def _provider_env(servers: Servers, mp: pytest.MonkeyPatch) -> None:
    for key, value in servers.env().items():
        mp.setenv(key, value)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    s = Servers()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def raw_run(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapturedRun]:
    with pytest.MonkeyPatch.context() as mp:
        _provider_env(servers, mp)
        yield from capture(tmp_path_factory.mktemp("raw"), {
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT",
            "INSPECT_OTEL_CAPTURE_PROVIDER_CALL": "true",
        }, run=_run(servers))


@pytest.fixture(scope="module")
def default_run(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapturedRun]:
    with pytest.MonkeyPatch.context() as mp:
        _provider_env(servers, mp)
        yield from capture(tmp_path_factory.mktemp("default"), {
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT",
        }, run=_run(servers))


def _without(attrs: Any, key: str) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k != key}


def _chats(run: CapturedRun, model: str) -> list[Any]:
    return sorted((s for s in run.spans_named("chat ") if s.attributes[sc.INSPECT_MODEL] == model),
                  key=lambda s: s.start_ns)


def test_the_eval_went_through_the_real_providers(raw_run, servers):
    assert raw_run.log.status == "success", raw_run.log.error
    assert {r.path for r in servers.openai.requests} == {"/v1/chat/completions"}
    assert {r.path for r in servers.grader.requests} == {"/v1/messages"}
    assert {r.path for r in servers.anthropic.requests} == {"/v1/messages"}
    # The SDKs sent the key (the servers refuse calls without it).
    assert all(API_KEY in json.dumps(r.headers) for r in servers.openai.requests)


def test_openai_chat_spans(raw_run, servers):
    chats = _chats(raw_run, MODEL)
    assert len(chats) == 2 * len(ROWS)  # a tool call, then the answer
    answered_ids = {f"chatcmpl-test-{n}" for n in range(len(servers.openai.requests))}
    for span in chats:
        a = span.attributes
        assert span.name == "chat gpt-4o-mini" and span.kind == 3  # CLIENT
        assert a[sc.GEN_AI_PROVIDER_NAME] == "openai"
        assert a[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
        assert a[sc.GEN_AI_RESPONSE_MODEL] == OPENAI_RESPONSE_MODEL
        assert a[sc.GEN_AI_RESPONSE_ID] in answered_ids
        # OpenAI's prompt_tokens already include the cached ones: input tokens are prompt_tokens.
        assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == OPENAI_USAGE["prompt_tokens"]
        assert a[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 12
        assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == OPENAI_USAGE["completion_tokens"]
        assert a[sc.SERVER_ADDRESS] == "127.0.0.1"
        assert a[sc.SERVER_PORT] == servers.openai.port
    reasons = sorted(s.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] for s in chats)
    assert reasons == [("stop",)] * len(ROWS) + [("tool_call",)] * len(ROWS)


def test_anthropic_chat_spans_per_model_and_role(raw_run, servers):
    grader, judge = _chats(raw_run, GRADER), _chats(raw_run, JUDGE)
    assert len(grader) == len(judge) == len(ROWS)
    expected_input = (ANTHROPIC_USAGE["input_tokens"] + ANTHROPIC_USAGE["cache_read_input_tokens"]
                      + ANTHROPIC_USAGE["cache_creation_input_tokens"])
    for span in grader + judge:
        a = span.attributes
        assert a[sc.GEN_AI_PROVIDER_NAME] == "anthropic"
        assert a[sc.GEN_AI_RESPONSE_MODEL] == ANTHROPIC_RESPONSE_MODEL
        assert a[sc.GEN_AI_RESPONSE_ID].startswith("msg_test_")
        assert a[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
        assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == expected_input
        assert a[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 8
        assert a[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == 4
        assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == ANTHROPIC_USAGE["output_tokens"]
        assert a[sc.SERVER_ADDRESS] == "127.0.0.1"  # never "inspect:<key>@127.0.0.1"
    assert {s.attributes[sc.SERVER_PORT] for s in grader} == {servers.grader.port}
    assert {s.attributes[sc.INSPECT_MODEL_ROLE] for s in grader} == {"grader"}
    assert {s.attributes[sc.SERVER_PORT] for s in judge} == {servers.anthropic.port}


def test_raw_call_is_the_providers_json_without_headers(raw_run):
    assert len(_chats(raw_run, MODEL)) == 2 * len(ROWS)
    assert len(_chats(raw_run, GRADER)) == len(ROWS)
    for span in _chats(raw_run, MODEL):
        request = json.loads(span.attributes[sc.INSPECT_MODEL_CALL_REQUEST])
        response = json.loads(span.attributes[sc.INSPECT_MODEL_CALL_RESPONSE])
        assert request["model"] == "gpt-4o-mini"
        assert request["messages"][0]["content"] in {x for _, x, _ in ROWS}
        assert request["tools"][0]["function"]["name"] == "add"
        assert "extra_headers" not in request
        assert response["id"] == span.attributes[sc.GEN_AI_RESPONSE_ID]
        assert response["usage"]["prompt_tokens"] == OPENAI_USAGE["prompt_tokens"]  # not redacted
    for span in _chats(raw_run, GRADER):
        request = json.loads(span.attributes[sc.INSPECT_MODEL_CALL_REQUEST])
        response = json.loads(span.attributes[sc.INSPECT_MODEL_CALL_RESPONSE])
        assert request["model"] == "claude-grader" and request["max_tokens"] == 1024
        assert "extra_headers" not in request
        assert response["id"] == span.attributes[sc.GEN_AI_RESPONSE_ID]
        assert response["stop_reason"] == "end_turn"


def test_the_api_key_never_leaves(raw_run):
    # Inspect's own log holds it (the provider request's extra_headers): the data we mapped had it.
    assert any(API_KEY in json.dumps(e.call.request) for sample in raw_run.log.samples
               for e in sample.events if e.event == "model" and e.call is not None)
    assert raw_run.sink.bodies and not any(API_KEY.encode() in b for b in raw_run.sink.bodies)
    # Nor the user name of the grader URL's credentials next to an address.
    assert not any(b"inspect:" in b for b in raw_run.sink.bodies)


def test_raw_call_is_off_by_default(default_run, servers):
    chats = default_run.spans_named("chat ")
    assert chats and not any(sc.INSPECT_MODEL_CALL_REQUEST in s.attributes or
                             sc.INSPECT_MODEL_CALL_RESPONSE in s.attributes for s in chats)
    assert {s.attributes[sc.SERVER_PORT] for s in chats} == {
        servers.openai.port, servers.anthropic.port, servers.grader.port}


def test_replay_gives_the_same_chat_spans(raw_run, servers):
    sink = HttpSink()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint)
            mp.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_AND_EVENT")
            mp.setenv("INSPECT_OTEL_CAPTURE_PROVIDER_CALL", "true")
            _provider_env(servers, mp)
            summary = export_logs([raw_run.log.location])
        assert summary.ok, summary.failed_files
        live = {s.span_id: s.attributes for s in raw_run.spans_named("chat ")}
        replayed = {s.span_id: s.attributes for s in sink.sink.spans if s.name.startswith("chat ")}
        assert live and set(replayed) == set(live)
        for span_id, attrs in live.items():
            assert sc.INSPECT_MODEL_CALL_REQUEST in attrs and sc.SERVER_ADDRESS in attrs
            # Inspect's log pools identical messages, keeping one message id for all: the ids in
            # gen_ai.input.messages of two scorers' identical prompts can differ from live.
            assert _without(replayed[span_id], sc.GEN_AI_INPUT_MESSAGES) == _without(
                attrs, sc.GEN_AI_INPUT_MESSAGES)
        assert not any(API_KEY.encode() in b for b in sink.sink.bodies)
    finally:
        sink.stop()


def test_receiver_keeps_the_raw_call_on_mlflow_spans_and_scout_imports_it(
        raw_run, servers, mlflow_server, mlflow_client, receiver_factory):
    """The log replayed (same attributes as live, above) through a real receiver into the real
    MLflow: the chat spans there hold the raw call, readable; Scout's import from MLflow puts it
    in ModelEvent.call, equal to Inspect's own call less its headers."""
    import asyncio

    from inspect_otel.scout import mlflow_transcripts
    from tests.support.wait import wait_for

    experiment = "provider-call"
    receiver = receiver_factory(mlflow_server.url, experiment, settle=0.5)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        mp.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_AND_EVENT")
        mp.setenv("INSPECT_OTEL_CAPTURE_PROVIDER_CALL", "true")
        _provider_env(servers, mp)
        assert export_logs([raw_run.log.location]).ok
    receiver.wait_idle()
    exp_id = mlflow_client.get_experiment_by_name(experiment).experiment_id

    def traces() -> list[Any]:
        return mlflow_client.search_traces(
            locations=[exp_id], filter_string="tags.`inspect.span.kind` = 'sample'")
    wait_for(lambda: len(traces()) == len(ROWS), 60, what="sample traces in MLflow")

    exported = {s.span_id: s.attributes for s in raw_run.spans_named("chat ")}
    assert len(exported) == 4 * len(ROWS)  # two of the model, one of the grader, one of the judge
    seen = 0
    for trace in traces():
        for span in trace.data.spans:
            if not span.name.startswith("chat "):
                continue
            sent = exported[span.span_id]
            for key in (sc.INSPECT_MODEL_CALL_REQUEST, sc.INSPECT_MODEL_CALL_RESPONSE):
                value = span.attributes[key]
                assert (json.loads(value) if isinstance(value, str) else value) == json.loads(sent[key])
            assert span.attributes[sc.SERVER_PORT] == sent[sc.SERVER_PORT]
            seen += 1
    assert seen == len(exported)

    async def read() -> list[Any]:
        return [t async for t in mlflow_transcripts(experiment, mlflow_server.url)]
    transcripts = asyncio.run(read())
    assert len(transcripts) == len(ROWS)
    from inspect_ai.log import read_eval_log

    log = read_eval_log(raw_run.log.location, resolve_attachments="full")  # Inspect's own call
    inspect_calls = {e.uuid: e.call for s in log.samples or [] for e in s.events
                     if e.event == "model"}
    imported = [e for t in transcripts for e in t.events if e.event == "model"]
    assert inspect_calls and len(imported) == len(inspect_calls)
    for event in imported:
        original = inspect_calls[event.uuid]
        request = {k: v for k, v in original.request.items() if k != "extra_headers"}
        assert event.call is not None and event.call.request == request
        assert event.call.response == original.response


def test_without_inspects_active_sample_the_hook_still_exports(servers, tmp_path):
    """The hook reads the running sample's attachments through a private API of Inspect's
    (``inspect_ai.log._samples.sample_active``). Inspect itself uses that function, so it cannot
    be taken away here: the hook's lookup is pointed at a name a later Inspect might leave it
    under. The eval and its chat spans go on; the raw call goes out as Inspect holds it."""
    from inspect_otel import hook

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hook, "_ACTIVE_SAMPLE", ("inspect_ai.log._samples", "renamed_sample_active"))
        assert hook._sample_attachments() is None
        _provider_env(servers, mp)
        for run in capture(tmp_path, {
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT",
                "INSPECT_OTEL_CAPTURE_PROVIDER_CALL": "true"}, run=_run(servers)):
            assert run.log.status == "success", run.log.error
            chats = _chats(run, MODEL)
            assert len(chats) == 2 * len(ROWS)
            requests = [s.attributes[sc.INSPECT_MODEL_CALL_REQUEST] for s in chats]
            assert all(json.loads(r)["model"] == "gpt-4o-mini" for r in requests)
            assert any("attachment://" in r for r in requests), requests  # b's long prompt
