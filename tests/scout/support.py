"""Shared pieces of the Scout import tests: producing an exported eval, reading transcripts the
way Scout does, and comparing two readings of the same samples."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def clean_env() -> dict[str, str]:
    """The environment for a producer process: no telemetry settings of the test session."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("OTEL_", "INSPECT_OTEL_", "MLFLOW_"))}


def produce(out: Path, *args: str, timeout: float = 240) -> None:
    """Run the calculator eval in its own process (tests/scout/produce.py)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.scout.produce", "--log-dir", str(out / "logs"), *args],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def read_transcripts(location: str | Path) -> dict[str, Any]:
    """Every transcript of a Scout source (an eval log directory or a transcript database), with
    all messages and events, as Scout's own reader gives them."""
    from inspect_scout import transcripts_from
    from inspect_scout._transcript.types import TranscriptContent

    async def read() -> dict[str, Any]:
        out = {}
        async with transcripts_from(str(location)).reader() as reader:
            async for info in reader.index():
                out[info.transcript_id] = await reader.read(
                    info, TranscriptContent(messages="all", events="all"))
        return out

    return asyncio.run(read())


def import_into(db: Path, source: Any) -> None:
    from inspect_scout import transcripts_db

    async def run() -> None:
        async with transcripts_db(str(db)) as tdb:
            await tdb.insert(source)

    asyncio.run(run())


def _norm(value: Any) -> Any:
    """Scout's database stores a scalar score as text; compare values as text."""
    return None if value in (None, "") else str(value)


def message_view(message: Any) -> tuple[Any, ...]:
    calls = tuple((c.id, c.function, tuple(sorted(c.arguments.items())))
                  for c in getattr(message, "tool_calls", None) or [])
    error = getattr(message, "error", None)
    return (message.id, message.role, message.text, calls, getattr(message, "tool_call_id", None),
            getattr(message, "function", None), (error.type, error.message) if error else None)


def event_view(event: Any) -> tuple[Any, ...]:
    """What item 4 compares of an event (and the span tree around model and tool events)."""
    kind = event.event
    if kind == "model":
        usage = event.output.usage
        return (kind, event.uuid, event.model, len(event.input), event.output.completion,
                usage.total_tokens if usage else None)
    if kind == "tool":
        return (kind, event.uuid, event.id, event.function,
                tuple(sorted(event.arguments.items())), str(event.result),
                (event.error.type, event.error.message) if event.error else None)
    if kind == "score":
        return (kind, event.scorer, _norm(event.score.value), event.intermediate)
    if kind == "span_begin":
        return (kind, event.id, event.parent_id, event.type, event.name)
    if kind == "span_end":
        return (kind, event.id)
    if kind == "error":
        return (kind, event.error.message)
    return (kind,)


COMPARED_EVENTS = ("model", "tool", "score", "span_begin", "span_end", "error")


def assert_same(ours: dict[str, Any], scouts: dict[str, Any]) -> None:
    """Item 4: count, ids, messages, model/tool events in order, tool calls, scores, model and
    token totals equal Scout's own reading of the .eval log."""
    assert sorted(ours) == sorted(scouts)
    for tid, expected in scouts.items():
        got = ours[tid]
        where = f"transcript {tid} ({expected.task_id} epoch {expected.task_repeat})"
        for name in ("task_set", "task_id", "task_repeat", "model", "message_count",
                     "total_tokens", "total_time", "success", "agent"):
            assert getattr(got, name) == getattr(expected, name), f"{where}: {name}"
        for name in ("score", "score_explanation", "error", "limit"):
            assert _norm(getattr(got, name)) == _norm(getattr(expected, name)), f"{where}: {name}"
        assert [message_view(m) for m in got.messages] == \
            [message_view(m) for m in expected.messages], f"{where}: messages"
        assert [event_view(e) for e in got.events if e.event in COMPARED_EVENTS] == \
            [event_view(e) for e in expected.events if e.event in COMPARED_EVENTS], \
            f"{where}: events"
        scores = {k: _norm(v) for k, v in expected.metadata.items() if k.startswith("score_")}
        assert {k: _norm(v) for k, v in got.metadata.items() if k.startswith("score_")} == scores
        assert sum(e.output.usage.total_tokens for e in got.events
                   if e.event == "model" and e.output.usage) == expected.total_tokens
