"""Inspect on its other async backend (``INSPECT_ASYNC_BACKEND=trio``): the hook has no asyncio
loop to coalesce on, so it maps each event as it comes (hook.py, ``_call_later`` returns None).
The spans are still exactly once and equal to the replay of the log."""

from __future__ import annotations

from collections import Counter

import pytest

from inspect_otel.replay import export_logs
from tests.support.capture import hook_env
from tests.support.evals import run_simple
from tests.support.otlp_sink import HttpSink

CONTENT = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
           "OTEL_METRICS_EXPORTER": "none"}


def test_live_export_on_trio_equals_the_replay(tmp_path, monkeypatch):
    pytest.importorskip("trio")
    import inspect_otel.hook as hook

    calls = []
    original = hook.OtelHooks._map_pending

    def counting(self, live, everything=False):
        calls.append(everything)
        return original(self, live, everything)

    monkeypatch.setattr(hook.OtelHooks, "_map_pending", counting)
    server = HttpSink()
    try:
        with pytest.MonkeyPatch.context() as mp:
            hook_env(mp, server.endpoint, CONTENT)
            mp.setenv("INSPECT_ASYNC_BACKEND", "trio")
            log = run_simple(tmp_path / "logs", count=2)
            assert log.status == "success"
            assert server.sink.wait_for(
                lambda s: any(x.attributes.get("inspect.span.kind") == "run" for x in s.spans), 30)
        # events were mapped as they came: no asyncio timer, every call maps everything
        assert calls and all(calls)
        live = [s for s in server.sink.spans if s.attributes.get("inspect.span.kind") != "run"]
        assert Counter((s.trace_id, s.span_id) for s in live).most_common(1)[0][1] == 1
    finally:
        server.stop()
    replay = HttpSink()
    try:
        with pytest.MonkeyPatch.context() as mp:
            hook_env(mp, replay.endpoint, CONTENT)
            assert export_logs([log.location]).ok
        replayed = {(s.trace_id, s.span_id): s for s in replay.sink.spans
                    if s.attributes.get("inspect.span.kind") != "run"}
    finally:
        replay.stop()
    live_by_id = {(s.trace_id, s.span_id): s for s in live}
    assert replayed and set(replayed) == set(live_by_id)
    assert all(replayed[k] == live_by_id[k] for k in replayed)
