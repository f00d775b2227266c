"""Pure pieces of issue 16: where a model call went, the raw provider call's filtering, the
switch and its warning. No servers (the real providers run in test_provider_e2e.py)."""

from __future__ import annotations

import json
import logging

import pytest
from inspect_ai.model import ModelCall
from inspect_ai.model._model_config import ModelConfig

from inspect_otel import hook as hook_module
from inspect_otel import semconv as sc
from inspect_otel.config import PROVIDER_CALL_WITHOUT_CONTENT, ContentCapture, load_settings
from inspect_otel.content import REDACTED, ContentPolicy, redact_mapping
from inspect_otel.mapping._model import provider_call_attributes
from inspect_otel.mapping._server import ModelEndpoints, base_url, server_attributes

RAW = ContentPolicy(capture=ContentCapture.SPAN_ONLY, provider_call=True)


@pytest.mark.parametrize("url, expected", [
    ("http://127.0.0.1:8080/v1", {sc.SERVER_ADDRESS: "127.0.0.1", sc.SERVER_PORT: 8080}),
    ("https://localhost/v1", {sc.SERVER_ADDRESS: "localhost", sc.SERVER_PORT: 443}),
    ("http://localhost", {sc.SERVER_ADDRESS: "localhost", sc.SERVER_PORT: 80}),
    ("http://user:s3cret@localhost:9000", {sc.SERVER_ADDRESS: "localhost", sc.SERVER_PORT: 9000}),
    ("http://[::1]:4000/v1", {sc.SERVER_ADDRESS: "::1", sc.SERVER_PORT: 4000}),
    ("localhost:7000", {sc.SERVER_ADDRESS: "localhost", sc.SERVER_PORT: 7000}),  # grok's form
    ("LOCALHOST", {sc.SERVER_ADDRESS: "localhost", sc.SERVER_PORT: 443}),
    ("http://localhost:notaport", {}),
    ("http://[::1", {}),
    ("", {}),
    (None, {}),
])
def test_server_attributes(url, expected):
    assert server_attributes(url) == expected


def test_server_attributes_never_hold_credentials():
    attrs = server_attributes("https://inspect:sk-abc@127.0.0.1:1/v1")
    assert "sk-abc" not in json.dumps(attrs) and "inspect" not in json.dumps(attrs)


ENDPOINTS = ModelEndpoints(
    model="openai/gpt-4o", model_base_url="http://127.0.0.1:1/v1",
    role_base_urls={("grader", "anthropic/claude"): "http://127.0.0.1:2"},
    environ={"ANTHROPIC_BASE_URL": "http://127.0.0.1:3", "VLLM_BASE_URL": "http://127.0.0.1:4"},
)


@pytest.mark.parametrize("model, role, expected", [
    ("openai/gpt-4o", None, "http://127.0.0.1:1/v1"),  # --model-base-url
    ("openai/gpt-4o", "critic", "http://127.0.0.1:1/v1"),  # a role bound to the same model
    ("anthropic/claude", "grader", "http://127.0.0.1:2"),  # the role's own base_url
    ("anthropic/claude", None, "http://127.0.0.1:3"),  # ANTHROPIC_BASE_URL
    ("anthropic/claude", "other", "http://127.0.0.1:3"),
    ("openai/gpt-4o-mini", None, "https://api.openai.com/v1"),  # the provider's default
    ("vllm/meta/llama", None, "http://127.0.0.1:4"),  # <PROVIDER>_BASE_URL for other providers
    ("custom/model", None, None),  # unknown provider, nothing set
    ("openai/azure/gpt-4o", None, None),  # a deployment's endpoint: only when set
    ("mockllm/model", None, None),  # in-process
    ("model-without-provider", None, None),
])
def test_base_url_resolution(model, role, expected):
    assert base_url(model, role, ENDPOINTS) == expected


def test_inspect_eval_model_base_url_comes_after_the_providers_variables():
    env = ModelEndpoints(environ={"INSPECT_EVAL_MODEL_BASE_URL": "http://127.0.0.1:5",
                                 "OPENAI_BASE_URL": "http://127.0.0.1:6"})
    assert base_url("openai/x", None, env) == "http://127.0.0.1:6"
    assert base_url("anthropic/x", None, env) == "http://127.0.0.1:5"


def test_model_endpoints_from_a_spec_and_environment():
    from types import SimpleNamespace

    from inspect_otel.mapping._server import model_endpoints

    spec = SimpleNamespace(model="openai/m", model_base_url=None, model_roles={
        "grader": ModelConfig(model="anthropic/c", base_url="http://127.0.0.1:7"),
        "pool": [ModelConfig(model="openai/a"), ModelConfig(model="openai/b", base_url="http://[::1]:8")],
    })
    endpoints = model_endpoints(spec, {"OPENAI_BASE_URL": "http://127.0.0.1:9", "HOME": "/root",
                                       "OPENAI_API_KEY": "sk-not-kept"})
    assert endpoints.role_base_urls == {("grader", "anthropic/c"): "http://127.0.0.1:7",
                                        ("pool", "openai/b"): "http://[::1]:8"}
    assert endpoints.environ == {"OPENAI_BASE_URL": "http://127.0.0.1:9"}  # base URLs only
    assert base_url("openai/a", "pool", endpoints) == "http://127.0.0.1:9"


# --- the raw provider call ------------------------------------------------------------------------

def _call(**kwargs) -> ModelCall:
    request = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}],
               "extra_headers": {"x-anything": "value-7f3a9c21e8"}, "api_key": "k-123456",
               "metadata": {"headers": {"h": "1"}, "note": "Bearer abc123def456ghi"}}
    response = {"id": "r1", "usage": {"prompt_tokens": 3, "completion_tokens": 2},
                "base_url": "http://user:pw1234@127.0.0.1:1/v1"}
    return ModelCall(request=kwargs.get("request", request), response=kwargs.get("response", response))


def test_raw_call_drops_headers_and_redacts_secrets():
    attrs = provider_call_attributes(_call(), {}, RAW)
    request = json.loads(attrs[sc.INSPECT_MODEL_CALL_REQUEST])
    response = json.loads(attrs[sc.INSPECT_MODEL_CALL_RESPONSE])
    assert "extra_headers" not in request and "headers" not in request["metadata"]
    assert request["api_key"] == REDACTED
    assert request["metadata"]["note"] == REDACTED
    assert request["max_tokens"] == 100 and request["messages"][0]["content"] == "hi"
    assert response["usage"] == {"prompt_tokens": 3, "completion_tokens": 2}  # counts, not secrets
    assert response["base_url"] == f"http://{REDACTED}@127.0.0.1:1/v1"
    assert "value-7f3a9c21e8" not in json.dumps(attrs)


def test_raw_call_only_with_the_switch_and_content_on_spans():
    call = _call()
    assert provider_call_attributes(call, {}, ContentPolicy(capture=ContentCapture.SPAN_ONLY)) == {}
    for capture in (ContentCapture.NO_CONTENT, ContentCapture.EVENT_ONLY):
        assert provider_call_attributes(call, {}, ContentPolicy(capture=capture,
                                                                provider_call=True)) == {}
    assert provider_call_attributes(None, {}, RAW) == {}


def test_raw_call_resolves_attachments_and_stays_json_within_the_limit():
    long_text = "word " * 400
    call = _call(request={"messages": [{"role": "user", "content": "attachment://abc"}]},
                 response=None)
    policy = ContentPolicy(capture=ContentCapture.SPAN_ONLY, provider_call=True, max_length=300)
    attrs = provider_call_attributes(call, {"abc": long_text}, policy)
    assert sc.INSPECT_MODEL_CALL_RESPONSE not in attrs  # a pending call has no response
    text = attrs[sc.INSPECT_MODEL_CALL_REQUEST]
    assert len(text) <= 300
    content = json.loads(text)["messages"][0]["content"]
    assert content.startswith("word word") and "truncated" in content


def test_secret_keys_are_not_token_counts():
    policy = ContentPolicy()
    data = {"max_tokens": 5, "input_tokens_cache_read": 2, "access_token": "abc",
            "refresh_token": "def", "token": "ghi", "x_auth_token": "jkl"}
    out = redact_mapping(data, policy)
    assert out["max_tokens"] == 5 and out["input_tokens_cache_read"] == 2
    assert all(out[k] == REDACTED for k in ("access_token", "refresh_token", "token", "x_auth_token"))


# --- the switch -------------------------------------------------------------------------------------

@pytest.mark.parametrize("content, switch, on, warned", [
    ("SPAN_AND_EVENT", "true", True, False),
    ("SPAN_ONLY", "1", True, False),
    ("EVENT_ONLY", "true", False, True),
    (None, "true", False, True),
    ("SPAN_AND_EVENT", None, False, False),
    ("SPAN_AND_EVENT", "false", False, False),
])
def test_provider_call_switch(content, switch, on, warned):
    env = {}
    if content:
        env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = content
    if switch:
        env["INSPECT_OTEL_CAPTURE_PROVIDER_CALL"] = switch
    settings = load_settings(env)
    assert settings.capture_provider_call is on
    assert ContentPolicy.from_settings(settings).raw_provider_call is on
    assert (PROVIDER_CALL_WITHOUT_CONTENT in settings.warnings) is warned


def test_switch_without_content_warns_once_per_process(monkeypatch, caplog):
    monkeypatch.setattr(hook_module, "_WARNED_SETTINGS", set())
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
    monkeypatch.setenv("INSPECT_OTEL_CAPTURE_PROVIDER_CALL", "true")
    caplog.set_level(logging.WARNING, logger="inspect_otel")
    hooks = hook_module.OtelHooks()
    pipelines = []
    try:
        pipelines.append(hooks._current_pipeline())
        monkeypatch.setenv("OTEL_SERVICE_NAME", "another")  # a new pipeline, same problem
        pipelines.append(hooks._current_pipeline())
        assert pipelines[0] is not pipelines[1]
        assert hooks._policy.raw_provider_call is False
    finally:
        for pipeline in pipelines:
            pipeline.close()
    said = [r for r in caplog.records if "INSPECT_OTEL_CAPTURE_PROVIDER_CALL" in r.getMessage()]
    assert len(said) == 1


def test_export_says_the_switch_does_nothing_without_content(monkeypatch, capsys, tmp_path):
    import argparse

    from inspect_otel import replay

    monkeypatch.setenv("INSPECT_OTEL_CAPTURE_PROVIDER_CALL", "true")
    args = argparse.Namespace(paths=[str(tmp_path / "none.eval")], endpoint=None, protocol=None, to_file=None,
                              dry_run=True)
    assert replay.main(args) == 1  # the missing file
    err = capsys.readouterr().err
    assert err.count("INSPECT_OTEL_CAPTURE_PROVIDER_CALL=true does nothing") == 1
