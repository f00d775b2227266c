"""Secrets planted everywhere an eval can carry them never cross the socket; the fields around
them do. The real Inspect eval loop (mockllm/model) -> the hook -> a real OTLP/HTTP sink, whose
raw request bodies (spans, log records, metrics, resources) are searched byte for byte."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from inspect_ai import Task, eval, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ModelOutput, ModelUsage
from inspect_ai.scorer import match
from inspect_ai.solver import Generate, TaskState, generate, solver, use_tools
from inspect_ai.tool import ToolError, tool

from tests.support.capture import hook_env
from tests.support.evals import MODEL, USAGE
from tests.support.otlp_sink import HttpSink, Sink

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJqd3Q3dTVrIn0."
       "Qm9vbTJxeHJ0V0p3c2lnbmF0dXJlMDE")
# Every planted secret, each unique so that a byte search finds any copy of it.
SECRETS = {
    "task arg: URL credentials": "tv8Kp2Lq",
    "task arg: api_key": "kq4Wm9Zr",
    "task arg: auth": "au7Hn3Xc",
    "task arg: cookie": "co5Jt8Vb",
    "task arg: session": "se2Rf6Yd",
    "task arg: api_key= in free text": "nt9Gd4Qs",
    "task arg: JWT": JWT.rsplit(".", 1)[-1],
    "model arg: URL credentials": "mu3Bx8Pk",
    "model arg: client_secret": "ms6Tc1Wn",
    "dataset location: URL credentials": "du4Lz7Hs",
    "sample metadata: password": "mp8Vq2Ej",
    "sample metadata: token: in text": "mn1Ks5Yt",
    "sample error: URL credentials": "sx9Xw3Ra",
    "tool error: bearer header": "te6Pn2Mc99",
    "logger message: password=": "lg3Hy7Ub",
    "resource: deployment.token": "rt5Dm1Qf",
    "resource: URL credentials": "ru2Cg6Nv",
    "sample input: api_key=": "in7Fs4Lw",
    "sample id: password=": "si4Wd8Kz",
}
S = SECRETS
# A sample id is identity, not content: it leaves on every span and on the running marker.
FAILS = f"fails password={S['sample id: password=']}"
log = logging.getLogger("leaky_task")


@tool
def fetch():
    async def execute(url: str) -> str:
        """Fetch a URL.

        Args:
          url: What to fetch.
        """
        raise ToolError(f"upstream refused: Authorization: Bearer {S['tool error: bearer header']}")

    return execute


def _scripted(input: list[Any], tools: Any, tool_choice: Any, config: Any) -> ModelOutput:
    if any(getattr(m, "role", "") == "tool" for m in input):
        output = ModelOutput.from_content(MODEL, "3")
    else:
        output = ModelOutput.for_tool_call(MODEL, "fetch", {"url": "https://example.org/x"})
    output.usage = ModelUsage(**USAGE)
    return output


@solver
def leaky_solver():
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        log.warning(f"retrying with password={S['logger message: password=']}")
        if state.sample_id == FAILS:
            raise RuntimeError("connect to postgresql://admin:"
                               f"{S['sample error: URL credentials']}@db.internal/evals failed")
        return state

    return solve


@task
def leaky(endpoint: str, api_key: str, key: str, auth: str, cookie: str, session: str, note: str,
          header_note: str, author: str, max_tokens: int):
    metadata = {"password": S["sample metadata: password"], "topic": "math",
                "note": f"token: {S['sample metadata: token: in text']}"}
    dataset = MemoryDataset(
        [Sample(id="ok", input=f"add 1 2 (api_key={S['sample input: api_key=']})", target="3",
                metadata=metadata),
         Sample(id=FAILS, input="add 2 2", target="4", metadata=metadata)],
        name="leaky-data",
        location=f"https://carol:{S['dataset location: URL credentials']}@data.internal/ds.jsonl",
    )
    return Task(dataset=dataset, solver=[use_tools(fetch()), leaky_solver(), generate()],
                scorer=match())


@dataclass
class Leaky:
    log: Any
    sink: Sink

    @property
    def raw(self) -> bytes:
        return self.sink.raw


def _run(tmp: Path, env: dict[str, str]) -> Iterator[Leaky]:
    server = HttpSink()
    with pytest.MonkeyPatch.context() as mp:
        hook_env(mp, server.endpoint, {"OTEL_METRIC_EXPORT_INTERVAL": "500"})
        mp.setenv("OTEL_RESOURCE_ATTRIBUTES", ",".join((
            "service.namespace=evals-team",
            f"deployment.token={S['resource: deployment.token']}",
            f"vcs.repository.url.full=https://dave:{S['resource: URL credentials']}@git.internal/r",
        )))
        mp.setenv("INSPECT_OTEL_SAMPLE_METADATA_KEYS", "password,topic,note")
        for key, value in env.items():
            mp.setenv(key, value)
        logs = eval(
            leaky(endpoint=f"https://alice:{S['task arg: URL credentials']}@llm.internal/v1",
                  api_key=S["task arg: api_key"], key="lookup-k0",
                  auth=S["task arg: auth"], cookie=S["task arg: cookie"],
                  session=S["task arg: session"],
                  note=f"retry with api_key={S['task arg: api_key= in free text']} later",
                  header_note=f"header {JWT}", author="Jane Author", max_tokens=512),
            model=MODEL, log_dir=str(tmp), display="none", fail_on_error=False,
            model_args={"custom_outputs": _scripted,
                        "endpoint": f"https://bob:{S['model arg: URL credentials']}@llm.internal/v1",
                        "client_secret": S["model arg: client_secret"]},
        )
        assert server.sink.wait_for(
            lambda s: any(sp.attributes.get("inspect.span.kind") == "run" for sp in s.spans)
            and s.metrics, timeout=30)
        yield Leaky(logs[0], server.sink)
    server.stop()


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Leaky]:
    yield from _run(tmp_path_factory.mktemp("leaky-private"), {})


@pytest.fixture(scope="module")
def content(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Leaky]:
    yield from _run(tmp_path_factory.mktemp("leaky-content"),
                    {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT"})


def _planted_in_the_log(run: Leaky) -> None:
    """The eval really carried every secret (else the absence below proves nothing)."""
    text = run.log.model_dump_json()
    for sample in run.log.samples:
        text += sample.model_dump_json()
    missing = [what for what, secret in SECRETS.items()
               if secret not in text and not what.startswith("resource")]
    assert missing == []


def _leaks(run: Leaky) -> list[str]:
    raw = run.raw
    return [what for what, secret in SECRETS.items() if secret.encode() in raw]


def _task(run: Leaky) -> dict[str, Any]:
    return next(s for s in run.sink.spans if s.attributes.get("inspect.span.kind") == "task").attributes


def test_content_off_nothing_secret_leaves_and_the_rest_survives(private):
    _planted_in_the_log(private)
    assert _leaks(private) == []
    task = _task(private)
    args = json.loads(task["inspect.task.args"])
    assert args["author"] == "Jane Author" and args["max_tokens"] == 512
    assert args["endpoint"] == "https://[REDACTED]@llm.internal/v1"
    assert args["api_key"] == args["auth"] == args["cookie"] == args["session"] == "[REDACTED]"
    assert args["key"] == "lookup-k0"  # a bare key is not a secret name
    assert args["note"] == "retry with api_key=[REDACTED] later"
    assert args["header_note"] == "header [REDACTED]"
    model_args = json.loads(task["inspect.task.model_args"])
    assert model_args["endpoint"] == "https://[REDACTED]@llm.internal/v1"
    assert model_args["client_secret"] == "[REDACTED]" and model_args["custom_outputs"] is None
    assert task["inspect.dataset.location"] == "https://[REDACTED]@data.internal/ds.jsonl"
    assert task["inspect.dataset.name"] == "leaky-data"
    roots = [s for s in private.sink.spans if s.attributes.get("inspect.span.kind") == "sample"]
    assert {r.attributes["inspect.sample.metadata.topic"] for r in roots} == {"math"}
    assert {r.attributes["inspect.sample.metadata.password"] for r in roots} == {"[REDACTED]"}
    assert {r.attributes["inspect.sample.metadata.note"] for r in roots} == {"token: [REDACTED]"}
    failed = next(r for r in roots
                  if r.attributes["inspect.sample.id"] == "fails password=[REDACTED]")
    assert "connect to postgresql://[REDACTED]@db.internal/evals failed" in failed.status_message
    tools = [s for s in private.sink.spans if s.name == "execute_tool fetch"]
    assert tools and all("Authorization: [REDACTED]" in t.status_message for t in tools)
    ours = [a["inspect.message"] for s in private.sink.spans for (name, _, a) in s.events
            if name == "inspect.logger" and a["inspect.logger.name"] == "leaky_task"]
    assert len(ours) == 2 and all(m.endswith("\nretrying with password=[REDACTED]") for m in ours)
    resource = private.sink.spans[0].resource
    assert resource["service.namespace"] == "evals-team"
    assert resource["deployment.token"] == "[REDACTED]"
    assert resource["vcs.repository.url.full"] == "https://[REDACTED]@git.internal/r"


def test_content_on_nothing_secret_leaves_and_the_content_survives(content):
    _planted_in_the_log(content)
    assert _leaks(content) == []
    roots = [s for s in content.sink.spans if s.attributes.get("inspect.span.kind") == "sample"]
    ok = next(r for r in roots if r.attributes["inspect.sample.id"] == "ok")
    assert ok.attributes["inspect.sample.input"] == "add 1 2 (api_key=[REDACTED])"
    chats = [s for s in content.sink.spans if s.name.startswith("chat ")]
    assert any("add 1 2 (api_key=[REDACTED])" in s.attributes["gen_ai.input.messages"] for s in chats)
    # the tool's refusal reaches the model as a tool message: redacted there too, JSON intact
    second_calls = [json.loads(s.attributes["gen_ai.input.messages"]) for s in chats
                    if "tool_call_response" in s.attributes["gen_ai.input.messages"]]
    assert second_calls and all(
        "Authorization: [REDACTED]" in json.dumps(m) for m in second_calls)
    assert json.loads(_task(content)["inspect.task.args"])["author"] == "Jane Author"
