"""Pure pieces: settings, content policy, provider and score mapping, ids. No servers."""

from __future__ import annotations

import json

import pytest
from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageTool, ChatMessageUser
from inspect_ai.tool import ToolCall

from inspect_otel import ids
from inspect_otel.config import ContentCapture, Protocol, is_enabled, load_settings
from inspect_otel.content import ContentPolicy, message_to_semconv, redact_mapping, split_system
from inspect_otel.mapping._common import error_type, split_model, to_ns, usage_attributes
from inspect_otel.mapping._score import numeric_score, score_label


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"}, True),
        ({"INSPECT_OTEL_ENABLED": "true"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "INSPECT_OTEL_ENABLED": "false"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, False),
        ({"INSPECT_OTEL_ENABLED": "true", "OTEL_SDK_DISABLED": "TRUE"}, False),
    ],
)
def test_enabled(env, expected):
    assert is_enabled(env) is expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        (None, ContentCapture.NO_CONTENT),
        ("true", ContentCapture.SPAN_AND_EVENT),
        ("False", ContentCapture.NO_CONTENT),
        ("span_only", ContentCapture.SPAN_ONLY),
        ("EVENT_ONLY", ContentCapture.EVENT_ONLY),
        ("SPAN_AND_EVENT", ContentCapture.SPAN_AND_EVENT),
        ("bogus", ContentCapture.NO_CONTENT),
    ],
)
def test_content_capture_values(raw, expected):
    env = {} if raw is None else {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": raw}
    settings = load_settings(env)
    assert settings.content is expected
    assert bool(settings.warnings) is (raw == "bogus")


def test_protocols_limits_and_bad_values():
    settings = load_settings({
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/json",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "100",
        "INSPECT_OTEL_FLUSH_TIMEOUT": "soon",
        "INSPECT_OTEL_REDACT_PATTERNS": '["ok-[0-9]+", "(broken"]',
    })
    assert settings.traces_protocol is Protocol.GRPC
    assert settings.logs_protocol is Protocol.HTTP_PROTOBUF
    assert settings.metrics_protocol is Protocol.HTTP_PROTOBUF  # http/json: warned, fallback
    assert settings.max_attribute_length == 100
    assert settings.flush_timeout_s == 5.0
    assert settings.redact_patterns == ("ok-[0-9]+",)
    assert len(settings.warnings) == 3


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-abcdefghijklmnopqrstuvwxyz",
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "AKIAABCDEFGHIJKLMNOP",
        "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
    ],
)
def test_default_secret_patterns(secret):
    policy = ContentPolicy()
    cleaned = policy.redact(f"before {secret} after")
    assert secret not in cleaned and "[REDACTED]" in cleaned
    assert cleaned.startswith("before ") and cleaned.endswith(" after")


def test_user_patterns_and_secret_keys():
    policy = ContentPolicy(extra_patterns=("(?i)internal-[a-z]{4}",))
    assert policy.redact("id INTERNAL-abcd here") == "id [REDACTED] here"
    data = {"api_key": "anything", "nested": {"Authorization": "x"}, "n": 3,
            "client": object(), "note": "token sk-abcdefghijklmnopqrstuv"}
    redacted = redact_mapping(data, policy)
    assert redacted["api_key"] == "[REDACTED]"
    assert redacted["nested"]["Authorization"] == "[REDACTED]"
    assert redacted["n"] == 3 and redacted["client"] is None
    assert "sk-" not in redacted["note"]


def test_truncation_keeps_a_marker():
    policy = ContentPolicy(max_length=50)
    out = policy.clean("x" * 500)
    assert len(out) == 50 and out.endswith("chars]") and "truncated 450" in out
    assert policy.clean("short") == "short"


def test_messages_in_semconv_schema():
    messages = [
        ChatMessageSystem(content="be terse"),
        ChatMessageUser(content="add 1 2"),
        ChatMessageAssistant(content="", tool_calls=[ToolCall(id="c1", function="add",
                                                              arguments={"x": 1, "y": 2})]),
        ChatMessageTool(content="3", tool_call_id="c1", function="add"),
    ]
    system, others = split_system(messages)
    assert system == [{"type": "text", "content": "be terse"}]
    assert [m["role"] for m in others] == ["user", "assistant", "tool"]
    assert others[1]["parts"] == [{"type": "tool_call", "id": "c1", "name": "add",
                                   "arguments": {"x": 1, "y": 2}}]
    assert message_to_semconv(messages[3])["parts"] == [
        {"type": "tool_call_response", "id": "c1", "name": "add", "response": "3"}
    ]
    assert [m["id"] for m in others] == [m.id for m in messages[1:]]
    json.dumps(others)


@pytest.mark.parametrize(
    "model, provider, request_model",
    [
        ("openai/gpt-4o", "openai", "gpt-4o"),
        ("anthropic/claude-sonnet-4-0", "anthropic", "claude-sonnet-4-0"),
        ("google/gemini-2.5-pro", "gcp.gemini", "gemini-2.5-pro"),
        ("openai/azure/gpt-4o", "azure.ai.openai", "gpt-4o"),
        ("bedrock/meta.llama3", "aws.bedrock", "meta.llama3"),
        ("grok/grok-3", "x_ai", "grok-3"),
        ("mistral/mistral-large", "mistral_ai", "mistral-large"),
        ("openrouter/anthropic/claude", "openrouter", "anthropic/claude"),
        ("mockllm/model", "mockllm", "model"),
    ],
)
def test_provider_names(model, provider, request_model):
    assert split_model(model) == (provider, request_model)


@pytest.mark.parametrize(
    "value, number, label",
    [("C", 1.0, "C"), ("I", 0.0, "I"), ("P", 0.5, "P"), ("N", 0.0, "N"), (True, 1.0, "true"),
     (False, 0.0, "false"), (0.25, 0.25, None), (3, 3.0, None), ("yes", 1.0, "yes"),
     ("A", None, "A"), ([1, 2], None, None), ("correct", None, "correct"), ("TRUE", 1.0, "TRUE"),
     ("1e3", 1000.0, "1e3"), ("nan", None, "nan"), (None, None, None), ({"a": 1}, None, None)],
)
def test_score_values(value, number, label):
    assert numeric_score(value) == number
    assert score_label(value) == label


SCORE_VALUES = ["C", "I", "P", "N", "c", "yes", "No", "TRUE", "false", " yes", "correct",
                "incorrect", "A", "", "0.25", "-3", "1e3", "nan", "inf", "0x10", True, False, 0,
                1, 0.5, -2.5, None, [1, 2], {"a": 1}]


@pytest.mark.parametrize("value", SCORE_VALUES, ids=repr)
def test_numeric_score_is_inspect_value_to_float(value, caplog):
    """numeric_score is value_to_float where Inspect can read the value, None exactly where
    value_to_float gives up (it then logs a warning and answers 0.0)."""
    from inspect_ai.scorer import value_to_float

    caplog.set_level("WARNING", logger="inspect_ai.scorer._metric")
    inspect_number = value_to_float()(value)
    gave_up = any("Unable to convert" in r.getMessage() for r in caplog.records)
    number = numeric_score(value)
    if gave_up:
        assert number is None and inspect_number == 0.0
    else:
        assert number == inspect_number


def test_usage_input_includes_cache():
    from inspect_ai.model import ModelUsage

    usage = ModelUsage(input_tokens=10, output_tokens=4, input_tokens_cache_read=5,
                       input_tokens_cache_write=2, reasoning_tokens=1, total_tokens=21)
    assert usage_attributes(usage) == {
        "gen_ai.usage.input_tokens": 17, "gen_ai.usage.output_tokens": 4,
        "gen_ai.usage.cache_read.input_tokens": 5, "gen_ai.usage.cache_creation.input_tokens": 2,
        "gen_ai.usage.reasoning.output_tokens": 1,
    }


def test_error_types():
    assert error_type("RuntimeError('boom')", "x") == "RuntimeError"
    assert error_type("ValueError: bad", "x") == "ValueError"
    assert error_type("something went wrong", "x") == "x"
    assert error_type(None, "x") == "x"


def test_ids_are_deterministic_and_distinct():
    assert ids.sample_trace_id("u1") == ids.sample_trace_id("u1")
    assert ids.sample_trace_id("u1") != ids.sample_trace_id("u2")
    assert ids.run_trace_id("u1") != ids.sample_trace_id("u1")
    t = ids.sample_trace_id("u1")
    assert ids.span_id(t, "a") != ids.span_id(t, "b")
    assert 0 < ids.span_id(t, "a") < 2**64 and 0 < t < 2**128
    assert len(ids.trace_id_hex(t)) == 32 and len(ids.span_id_hex(ids.span_id(t, "a"))) == 16


def test_timestamps_are_exact_nanoseconds():
    assert to_ns("2026-01-02T03:04:05.123456+00:00") == 1767323045123456000


def test_ids_are_stable_across_versions():
    """Ids are a contract: a log replayed by a later version must collapse onto the live export."""
    assert ids.sample_trace_id("abc") == 155512172285075768122202620588632053271
    assert ids.span_id(ids.sample_trace_id("abc"), "span/x") == 17671025199819311282


def test_sample_metadata_only_on_opt_in():
    """Sample metadata can hold content: none by default, the named keys when opted in, every
    scalar key under content capture; secrets redacted, non-scalars never sent."""
    from inspect_otel import semconv as sc
    from inspect_otel.mapping._sample import _add_metadata

    metadata = {"topic": "geo", "level": 3, "weight": 0.5, "hard": True, "nested": {"a": 1},
                "api_key": "abc", "note": "token sk-abcdefghijklmnopqrstuvwxyz", "big": 2**70}
    p = sc.INSPECT_SAMPLE_METADATA_PREFIX

    def emitted(policy: ContentPolicy) -> dict:
        attrs: dict = {}
        _add_metadata(attrs, metadata, policy)
        return attrs

    assert emitted(ContentPolicy()) == {}
    assert emitted(ContentPolicy(metadata_keys=("topic", "nested", "missing"))) == {
        p + "topic": "geo"}
    everything = emitted(ContentPolicy(capture=ContentCapture.SPAN_AND_EVENT))
    assert everything == {p + "topic": "geo", p + "level": 3, p + "weight": 0.5, p + "hard": True,
                          p + "api_key": "[REDACTED]", p + "note": "token [REDACTED]"}
    settings = load_settings({"INSPECT_OTEL_SAMPLE_METADATA_KEYS": " topic, level,,topic "})
    assert settings.sample_metadata_keys == ("topic", "level")


def test_the_resource_hashes_once_and_like_the_sdks(monkeypatch):
    """The OTLP encoders group every span by resource: ours computes its hash once, and equals
    (and hashes like) the SDK's own Resource of the same attributes."""
    from opentelemetry.sdk.resources import Resource

    from inspect_otel.export import build_resource

    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci,team=evals")
    ours = build_resource()
    plain = Resource(ours.attributes, ours.schema_url)
    assert ours == plain and hash(ours) == hash(plain)
    assert {ours: 1}[plain] == 1
    assert ours.attributes["team"] == "evals" and ours.attributes["service.name"] == "inspect-ai"


@pytest.mark.parametrize("env, expected", [
    (None, "AlwaysOffExemplarFilter"),  # recorded outside any span: the default could keep none
    ("always_on", "AlwaysOnExemplarFilter"),  # the standard variable wins
    ("trace_based", "TraceBasedExemplarFilter"),
])
def test_exemplar_filter(monkeypatch, env, expected):
    from inspect_otel.export import TelemetryPipeline

    for name in ("OTEL_METRICS_EXEMPLAR_FILTER", "OTEL_METRICS_EXPORTER", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    if env is not None:
        monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", env)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    pipeline = TelemetryPipeline(load_settings())
    try:
        providers = [p for p in pipeline._owned if type(p).__name__ == "MeterProvider"]
        assert len(providers) == 1
        assert type(providers[0]._sdk_config.exemplar_filter).__name__ == expected
    finally:
        pipeline.close()


def test_live_batches_are_scheduled_on_asyncio_only():
    """Live events are mapped by a timer on the running asyncio loop; without one (Inspect on
    trio) the hook maps each event as it arrives."""
    import asyncio

    from inspect_otel.hook import LIVE_COALESCE_S, _call_later

    assert 0 < LIVE_COALESCE_S <= 0.5  # well inside the 2 s span-to-endpoint promise
    assert _call_later(0.01, lambda: None) is None

    async def scheduled() -> bool:
        fired = asyncio.Event()
        assert _call_later(0.01, fired.set) is not None
        await asyncio.wait_for(fired.wait(), 5)
        return fired.is_set()

    assert asyncio.run(scheduled())


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_backlog_at_the_sample_end_is_mapped_in_slices_the_loop_runs_between(backend):
    """Under load the live batches fall behind; at the sample's end the backlog is mapped slice by
    slice, and a coroutine of the eval runs in between (on trio, with no slices, all at once)."""
    import time

    import anyio

    from inspect_otel.hook import LIVE_SLICE_S, OtelHooks, _LiveSample

    fed: list[int] = []
    ticks: list[int] = []

    class SlowMapper:
        def feed(self, event: int) -> None:
            time.sleep(LIVE_SLICE_S / 4)  # four events fill a slice
            fed.append(event)

    hooks = OtelHooks()
    live = _LiveSample(task=None, mapper=SlowMapper(), sampled=True,  # type: ignore[arg-type]
                       pending=list(range(40)))
    hooks._emit_live = lambda live, done: None  # type: ignore[method-assign]

    async def main() -> None:
        done = anyio.Event()

        async def eval_coroutine() -> None:
            while not done.is_set():
                ticks.append(len(fed))
                await anyio.sleep(0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(eval_coroutine)
            await anyio.sleep(0)
            await hooks._map_remaining(live)
            done.set()

    anyio.run(main, backend=backend)
    assert fed == list(range(40)) and live.pending == [] and live.mapping_timer is None
    between = {n for n in ticks if 0 < n < 40}
    if backend == "asyncio":
        assert len(between) >= 5, ticks  # the loop ran between slices
    else:
        assert not between, ticks
