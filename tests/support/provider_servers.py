"""Small OpenAI- and Anthropic-compatible HTTP servers on 127.0.0.1 for Inspect's real providers.

Inspect's ``openai`` and ``anthropic`` providers, with the real ``openai`` and ``anthropic`` SDKs,
talk to these instead of the providers' services (``OPENAI_BASE_URL`` / ``ANTHROPIC_BASE_URL`` or
a model's ``base_url``). One server speaks both APIs: ``POST /v1/chat/completions`` (OpenAI chat
completions) and ``POST /v1/messages`` (Anthropic messages). It checks the API key the SDK sends
(401 otherwise) and keeps every request it got.

What it answers (scripted, deterministic):
- a prompt containing ``GRADE``: ``GRADE: C``;
- with an ``add`` tool offered and no tool result yet: a call of ``add`` on the two numbers in the
  prompt (``add 1 2``); after the result: the result as the answer.
Usage is fixed per API (:data:`OPENAI_USAGE`, :data:`ANTHROPIC_USAGE`), with cached input tokens,
so tests can check cache-inclusive input token counts.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.otlp_sink import free_port

# The key the tests hand the SDKs. Deliberately not shaped like any provider's keys (redaction
# patterns would hide a leak of a key shaped like one): if it shows up anywhere, it leaked.
API_KEY = "inspect-otel-test-credential-7f3a9c21e8b4d05a"

OPENAI_RESPONSE_MODEL = "gpt-test-2026-01-01"
ANTHROPIC_RESPONSE_MODEL = "claude-test-20260101"
# OpenAI: prompt_tokens already includes the cached ones.
OPENAI_USAGE = {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37,
                "prompt_tokens_details": {"cached_tokens": 12}}
# Anthropic: input_tokens excludes the cache reads and writes.
ANTHROPIC_USAGE = {"input_tokens": 20, "output_tokens": 9, "cache_creation_input_tokens": 4,
                   "cache_read_input_tokens": 8}


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class _State:
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Any = field(default_factory=itertools.count)


def _numbers(text: str) -> tuple[int, int]:
    match = re.search(r"add (\d+) (\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _openai_text(messages: list[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [c.get("text", "") for c in content if isinstance(c, dict)]
    return " ".join(parts)


def _anthropic_text(body: dict[str, Any]) -> str:
    parts = [body["system"] if isinstance(body.get("system"), str) else ""]
    for m in body.get("messages", []):
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts += [c.get("text", "") for c in content or [] if isinstance(c, dict)]
    return " ".join(parts)


def _tool_result_text(messages: list[dict[str, Any]]) -> str | None:
    """The last tool result (OpenAI role=tool, Anthropic tool_result block), if any."""
    for m in reversed(messages):
        if m.get("role") == "tool":
            return str(m.get("content"))
        for block in m.get("content") if isinstance(m.get("content"), list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                content = block.get("content")
                if isinstance(content, list):
                    return " ".join(c.get("text", "") for c in content if isinstance(c, dict))
                return str(content)
    return None


def openai_reply(body: dict[str, Any], n: int) -> dict[str, Any]:
    messages = body.get("messages", [])
    text = _openai_text(messages)
    tools = [t.get("function", {}).get("name") for t in body.get("tools") or []]
    result = _tool_result_text(messages)
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if "GRADE" in text:
        message["content"], finish = "GRADE: C", "stop"
    elif "add" in tools and result is None:
        x, y = _numbers(text)
        message["tool_calls"] = [{"id": f"call_{n}", "type": "function", "function": {
            "name": "add", "arguments": json.dumps({"x": x, "y": y})}}]
        finish = "tool_calls"
    else:
        message["content"], finish = (result or "no tools").strip(), "stop"
    return {"id": f"chatcmpl-test-{n}", "object": "chat.completion", "created": 1767225600,
            "model": OPENAI_RESPONSE_MODEL, "system_fingerprint": "fp_test",
            "choices": [{"index": 0, "message": message, "finish_reason": finish,
                         "logprobs": None}],
            "usage": OPENAI_USAGE}


def anthropic_reply(body: dict[str, Any], n: int) -> dict[str, Any]:
    text = _anthropic_text(body)
    tools = [t.get("name") for t in body.get("tools") or []]
    result = _tool_result_text(body.get("messages", []))
    if "GRADE" in text:
        content, stop = [{"type": "text", "text": "GRADE: C"}], "end_turn"
    elif "add" in tools and result is None:
        x, y = _numbers(text)
        content = [{"type": "tool_use", "id": f"toolu_{n}", "name": "add",
                    "input": {"x": x, "y": y}}]
        stop = "tool_use"
    else:
        content, stop = [{"type": "text", "text": (result or "no tools").strip()}], "end_turn"
    return {"id": f"msg_test_{n}", "type": "message", "role": "assistant",
            "model": ANTHROPIC_RESPONSE_MODEL, "content": content, "stop_reason": stop,
            "stop_sequence": None, "usage": ANTHROPIC_USAGE}


def _authorized(headers: dict[str, str]) -> bool:
    """The key as a bearer token (openai, anthropic 2.x), as x-api-key (older anthropic SDKs), or
    as the password of a base URL's credentials (httpx sends those as basic auth)."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        value = base64.b64decode(value).decode(errors="replace").partition(":")[2]
    return API_KEY in (value, headers.get("x-api-key"))


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_test_{status}")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.state.lock:
            self.state.requests.append(Request(self.path, headers, body))
            n = next(self.state.ids)
        path = self.path.split("?", 1)[0]
        if path.endswith("/chat/completions"):
            if not _authorized(headers):
                return self._send(401, {"error": {"message": "bad key", "type": "auth"}})
            return self._send(200, openai_reply(body, n))
        if path.endswith("/messages"):
            if not _authorized(headers):
                return self._send(401, {"type": "error", "error": {"type": "authentication_error",
                                                                   "message": "bad key"}})
            return self._send(200, anthropic_reply(body, n))
        self._send(404, {"error": {"message": f"no route {path}"}})


class ProviderServer:
    """Both APIs on a free 127.0.0.1 port; ``requests`` holds what arrived."""

    def __init__(self) -> None:
        self._state = _State()
        handler = type("Handler", (_Handler,), {"state": self._state})
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def requests(self) -> list[Request]:
        with self._state.lock:
            return list(self._state.requests)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
