"""A sample's conversation (``inspect.sample.messages``: GenAI semconv messages, Inspect's
message ids) as MLflow chat messages: what its trace opens on.

MLflow's span view shows a span's inputs and outputs as chat when they hold chat messages, and
otherwise the messages of its ``mlflow.chat.messages`` attribute: system and user messages as
the inputs, assistant and tool messages as the outputs. That attribute takes OpenAI-style
messages (MLflow's own ``mlflow.tracing.set_span_chat_messages`` format: a role, text content,
``tool_calls`` whose arguments are JSON text, ``tool_call_id`` on tool results); MLflow shows no
chat at all when one message does not fit it. So everything becomes one of those: reasoning and
media parts become text, unknown roles ``user``, and the hook's ``"...[truncated N items]"``
(the middle messages it dropped to stay within its attribute limit) a visible system note.

The converted conversation stays within twice the size of what the hook sent (JSON arguments
gain escapes; at least MIN_BUDGET characters), dropping further middle messages if needed, as
the hook does: the first messages and the newest are kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._values import as_text, json_value, no_nul

CHAT_MESSAGES = "mlflow.chat.messages"
ROLES = frozenset({"system", "user", "assistant", "tool"})
NOTE_ROLE = "system"
TRUNCATED_ITEMS = re.compile(r"\.\.\.\[truncated (\d+) items\]")
MIN_BUDGET = 4096  # characters: the least a conversation may take, whatever the hook's limit
# Items converted at most (the first half and the newest): a sender controls the attribute, and
# the conversion runs on its request's path. The hook's budget holds a few hundred messages.
MAX_ITEMS = 1000


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def omitted_note(n: int) -> dict[str, Any]:
    return {"role": NOTE_ROLE, "content": f"[{n} messages not shown: the conversation was "
                                          f"shortened to fit the telemetry's size limit]"}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _dumps(value)


def _part_text(part: Mapping[str, Any]) -> str | None:
    """A part other than a tool call or response as text (None: nothing to show)."""
    kind = part.get("type")
    if kind == "text":
        return as_text(part.get("content"))
    if kind == "reasoning":
        content = as_text(part.get("content"))
        return f"Reasoning:\n{content}" if content else None
    if kind in ("uri", "blob", "file"):
        return f"[{as_text(part.get('modality')) or kind}: {as_text(part.get('uri')) or 'inline'}]"
    return f"[{as_text(kind) or 'unknown'} part]"


def _tool_call(part: Mapping[str, Any], fallback_id: str) -> dict[str, Any]:
    arguments = part.get("arguments")
    return {"id": as_text(part.get("id")) or fallback_id, "type": "function",
            "function": {"name": as_text(part.get("name")) or "tool",
                         "arguments": _text(arguments if arguments is not None else {})}}


def _tool_result(part: Mapping[str, Any]) -> dict[str, Any]:
    error = part.get("error")
    content = _text(part.get("response")) if part.get("response") is not None else ""
    if isinstance(error, Mapping) and not content:
        content = as_text(error.get("message"))
    message: dict[str, Any] = {"role": "tool", "tool_call_id": as_text(part.get("id")),
                               "content": content}
    if part.get("name"):
        message["name"] = as_text(part.get("name"))
    return message


def chat_message(item: Any, index: int) -> list[dict[str, Any]]:
    """One semconv message (or the hook's truncation marker) -> MLflow chat messages (a tool
    message per tool response; none for an item that holds nothing)."""
    if isinstance(item, str):
        m = TRUNCATED_ITEMS.fullmatch(item.strip())
        return [omitted_note(int(m.group(1)))] if m else [{"role": NOTE_ROLE, "content": item}]
    if not isinstance(item, Mapping):
        return []
    role = as_text(item.get("role")).lower()
    role = role if role in ROLES else "user"
    parts = [p for p in item.get("parts") or [] if isinstance(p, Mapping)]
    texts, calls, results = [], [], []
    for n, part in enumerate(parts):
        kind = part.get("type")
        if kind == "tool_call":
            calls.append(_tool_call(part, f"call_{index}_{n}"))
        elif kind == "tool_call_response":
            results.append(_tool_result(part))
        else:
            text = _part_text(part)
            if text:
                texts.append(text)
    out: list[dict[str, Any]] = []
    if texts or calls or not results:
        message: dict[str, Any] = {"role": role, "content": "\n\n".join(texts)}
        if calls and role == "assistant":
            message["tool_calls"] = calls
        elif calls:  # tool calls outside an assistant message: shown as text
            message["content"] = "\n\n".join(texts + [_dumps(c["function"]) for c in calls])
        out.append(message)
    return out + results


def chat_messages(items: Any) -> list[dict[str, Any]] | None:
    """The conversation (a JSON list of semconv messages) as MLflow chat messages; None when
    ``items`` is not a non-empty list."""
    text = items if isinstance(items, str) else ""
    items = json_value(items)
    if not isinstance(items, list) or not items:
        return None
    if len(items) > MAX_ITEMS:
        half = MAX_ITEMS // 2
        items = items[:half] + [f"...[truncated {len(items) - 2 * half + 1} items]"] + \
            items[-(half - 1):]
    if "\\u0000" in text or not text:  # before tool arguments become JSON text (NUL escaped)
        items = no_nul(items)
    out = [m for i, item in enumerate(items) for m in chat_message(item, i)]
    return out or None


def fit(messages: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """``messages`` whose JSON is at most ``budget`` characters: middle messages replaced by one
    note, keeping the first and the newest (as the hook does); at least the first and last.
    Linear in the number of messages (each is measured once): it runs on a request's path."""
    if len(messages) <= 2 or len(_dumps(messages)) <= budget:
        return messages
    sizes = [len(_dumps(m)) + 1 for m in messages]  # a comma after each
    total = sum(sizes) + 1
    lo = hi = len(messages) // 2  # messages[lo:hi] give way, growing from the middle
    removed = 0
    while lo > 1 or hi < len(messages) - 1:
        if lo > 1 and (lo >= len(messages) - hi or hi >= len(messages) - 1):
            lo -= 1
            removed += sizes[lo]
        else:
            removed += sizes[hi]
            hi += 1
        if total - removed + len(_dumps(omitted_note(hi - lo))) + 1 <= budget:
            break
    return messages[:lo] + [omitted_note(hi - lo)] + messages[hi:]


@dataclass(frozen=True)
class Conversation:
    messages: list[dict[str, Any]]  # the whole conversation
    turns: list[dict[str, Any]]  # the messages after the sample's input (its first turn)


def conversation(items: Any) -> Conversation | None:
    """A sample's conversation (``inspect.sample.messages``) for MLflow, within twice the size
    the hook sent (at least MIN_BUDGET); None without a usable conversation."""
    messages = chat_messages(items)
    if not messages:
        return None
    messages = fit(messages, max(2 * len(as_text(items)), MIN_BUDGET))
    first = next((i for i, m in enumerate(messages) if m["role"] in ("assistant", "tool")),
                 len(messages))
    return Conversation(messages, messages[first:])
