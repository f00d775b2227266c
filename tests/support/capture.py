"""Run an offline eval with the hook exporting to a fresh OTLP sink; keep what arrived."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.evals import run_calculator
from tests.support.otlp_sink import HttpSink, Sink


@dataclass
class CapturedRun:
    log: Any
    sink: Sink

    def spans_named(self, prefix: str) -> list[Any]:
        return [s for s in self.sink.spans if s.name.startswith(prefix)]

    def roots(self) -> list[Any]:
        return [s for s in self.sink.spans if s.attributes.get("inspect.span.kind") == "sample"]


def hook_env(mp: pytest.MonkeyPatch, endpoint: str, env: dict[str, str]) -> None:
    """The hook's environment for one test eval: none of the caller's OTEL_*/INSPECT_OTEL_*
    (another module-scoped capture may still be open), the endpoint, then ``env``."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "INSPECT_OTEL_")):
            mp.delenv(name)
    mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    for key, value in env.items():
        mp.setenv(key, value)


def _settled(sink: Sink, samples: int) -> bool:
    roots = [s for s in sink.spans if s.attributes.get("inspect.span.kind") == "sample"]
    run = [s for s in sink.spans if s.attributes.get("inspect.span.kind") == "run"]
    return len(roots) >= samples and bool(run)


def capture(tmp: Path, env: dict[str, str], run: Callable[..., Any] = run_calculator,
            **eval_kwargs: Any) -> Iterator[CapturedRun]:
    """``run(log_dir, **eval_kwargs)`` (default: the calculator eval) with the hook exporting
    to a fresh sink, held until every sample root and the run span arrived."""
    server = HttpSink()
    with pytest.MonkeyPatch.context() as mp:
        hook_env(mp, server.endpoint, {"OTEL_METRIC_EXPORT_INTERVAL": "500", **env})
        log = run(tmp, **eval_kwargs)
        expected = len(log.samples or [])
        assert server.sink.wait_for(lambda s: _settled(s, expected), timeout=30)
        yield CapturedRun(log, server.sink)
    server.stop()


