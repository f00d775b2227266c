"""A long agent trajectory, offline: the workload of agent benchmarks at full length.

Each sample is a ``read_file`` agent driven by a scripted ``mockllm/model``: ``turns`` model calls.
The first looks up its settings (``lookup(key="settings")``: a config file in which a secret of
every high-confidence shape is planted, tests/support/planted_secrets.py); the next ``turns - 2``
each read a 4 kB chunk of real source code (the standard library's HTTP, auth, mail and cookie
modules: full of the words password, token, session, cookie, auth and key, and of no real
secret); the last answers. Every model call's input is the whole
conversation so far, as in a real agent: 200 turns carry 800 kB of tool results. Model calls and
tools are instant, so any time the telemetry spends is exposed.

Used by ``bench/long_agent.py`` (the benchmark) and by the tests of long traces.
"""

from __future__ import annotations

import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.model import ChatMessageSystem, ChatMessageTool, ModelOutput, ModelUsage
from inspect_ai.scorer import includes
from inspect_ai.solver import generate, system_message, use_tools
from inspect_ai.tool import tool

from tests.support.planted_secrets import planted_text

MODEL = "mockllm/model"
CHUNK_CHARS = 4096
SYSTEM_PROMPT = "You are a code reviewer. Read the files you need with read_file, then answer."
# Real source, identical on every machine with this Python: a precision corpus for redaction too.
CORPUS_FILES = (
    "http/client.py", "http/cookies.py", "http/cookiejar.py", "http/server.py",
    "urllib/request.py", "urllib/parse.py", "smtplib.py", "imaplib.py", "ftplib.py", "netrc.py",
    "getpass.py", "hmac.py", "poplib.py", "xmlrpc/client.py", "nntplib.py", "secrets.py",
    "base64.py", "email/utils.py", "logging/handlers.py",
)


# The only lines of the corpus that captured content's redaction alters: literal secret-looking
# values in docstring examples (a cookie literal, an example password), by design.
CORPUS_LITERALS = ("'Set-Cookie: number=7", "passwd='geheim$parole'")


@lru_cache(maxsize=1)
def corpus_chunks() -> tuple[tuple[str, int, str], ...]:
    """(file, chunk index, text): each file cut at line ends into chunks of about 4 kB."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    chunks: list[tuple[str, int, str]] = []
    for name in CORPUS_FILES:
        text = (stdlib / name).read_text(encoding="utf-8")
        pieces: list[str] = []
        current: list[str] = []
        size = 0
        for line in text.splitlines(keepends=True):
            if size + len(line) > CHUNK_CHARS and current:
                pieces.append("".join(current))
                current, size = [], 0
            current.append(line)
            size += len(line)
        if current:
            pieces.append("".join(current))
        chunks += ((name, index, piece) for index, piece in enumerate(pieces))
    return tuple(chunks)


@lru_cache(maxsize=1)
def _chunk_index() -> dict[tuple[str, int], str]:
    return {(name, index): text for name, index, text in corpus_chunks()}


def chunk_for(sample: int, turn: int) -> tuple[str, int]:
    """The file and chunk a sample reads at a turn (deterministic, different per sample)."""
    chunks = corpus_chunks()
    name, index, _ = chunks[(sample * 37 + turn) % len(chunks)]
    return name, index


def _usage(turn: int) -> ModelUsage:
    return ModelUsage(input_tokens=1000 * (turn + 1), output_tokens=20,
                      total_tokens=1000 * (turn + 1) + 20)


def long_agent_model(input: list[Any], tools: Any, tool_choice: Any, config: Any) -> ModelOutput:
    """Decides from the conversation (samples run concurrently): read until ``turns - 1`` tool
    results are in, then answer. The sample number and turn count are in the first user turn."""
    first = next(m for m in input if not isinstance(m, ChatMessageSystem))
    words = first.text.split()
    sample, turns = int(words[-2]), int(words[-1])
    done = sum(1 for m in input if isinstance(m, ChatMessageTool))
    if done == 0 and turns > 1:
        output = ModelOutput.for_tool_call(MODEL, "lookup", {"key": "settings"})
    elif done < turns - 1:
        path, index = chunk_for(sample, done - 1)
        output = ModelOutput.for_tool_call(MODEL, "read_file", {"path": path, "chunk": index})
    else:
        output = ModelOutput.from_content(MODEL, f"Reviewed {done} chunks: DONE")
    output.usage = _usage(done)
    return output


@tool
def read_file():
    async def execute(path: str, chunk: int) -> str:
        """Read one chunk (about 4 kB) of a standard library source file.

        Args:
          path: The file, relative to the standard library.
          chunk: Which chunk of it, from 0.
        """
        text = _chunk_index().get((path, chunk))
        return text if text is not None else f"no chunk {chunk} in {path}"

    return execute


@tool
def lookup():
    async def execute(key: str) -> str:
        """Look up a named document.

        Args:
          key: Its name.
        """
        return planted_text() if key == "settings" else f"nothing under {key}"

    return execute


@task
def long_agent(turns: int = 100, samples: int = 4):
    rows = [
        Sample(id=f"agent{i}", input=f"Review the standard library's network code. {i} {turns}",
               target="DONE")
        for i in range(samples)
    ]
    return Task(dataset=rows, scorer=includes(), message_limit=2 * turns + 10,
                solver=[system_message(SYSTEM_PROMPT), use_tools(lookup(), read_file()), generate()])


def model_args() -> dict[str, Any]:
    return {"custom_outputs": long_agent_model}
